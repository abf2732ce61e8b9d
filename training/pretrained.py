"""Pretrained weights for training: which file, which variant, which layers to load.

`model.weights` names keras.applications' ImageNet file (`imagenet`),
torchvision's ImageNet weights (`torchvision`, `torchvision:IMAGENET1K_V2`),
both downloaded into the Keras cache on first use, an `.h5` of this package's
layout, or a torchvision checkpoint, told apart by content, not suffix. The
variant (and so the preprocessing) follows the weights, and a top for other
classes is replaced by a new one: transfer learning of the features (Yosinski
et al., arXiv 1411.1792).
"""

import dataclasses
import os

from resnet_keras import checkpoints, convert, fetch
from resnet_keras import weights as weights_lib
from resnet_keras.registry import REGISTRY, get_spec

IMAGENET = "imagenet"
# `torchvision` alone is torchvision's first ImageNet weights, the paper's recipe.
TORCHVISION, TORCHVISION_DEFAULT = "torchvision", "IMAGENET1K_V1"
# Each kind of weights file, as the formats of `weights.FORMATS` it comes in.
FILE_KINDS = {"h5": ("hdf5",), "torchvision": weights_lib.CHECKPOINT_FORMATS}
# The classifier: the one layer whose shape depends on the classes.
TOP = "predictions"
# Each kind of weights, in words for the progress line.
KINDS = {"imagenet": "keras.applications ImageNet weights", "h5": "Keras .h5 weights",
         "torchvision": "torchvision checkpoint",
         "torchvision_imagenet": "torchvision ImageNet weights, converted"}


@dataclasses.dataclass(frozen=True)
class PretrainedWeights:
    """What `model.weights` resolved to, and (after `load`) what was loaded.

    Attributes:
        source: str, `model.weights` as configured.
        kind: `imagenet`, `torchvision_imagenet`, `h5` or `torchvision` (a key of `KINDS`).
        path: str, the file read (for `torchvision_imagenet`, the converted `.h5`).
        variant: str or None, the layout the weights hold (`v1`, `v1.5`,
            `v2`); the model is built in it. None when the file does not tell
            (an `.h5` of a CIFAR net): then `model.variant` applies.
        variant_from_weights: bool, `model.variant` was unset and the weights set it.
        top_replaced: bool, or None before `load`: the file's `predictions`
            does not fit the model's, which keeps its new, initialized top.
        file_top: tuple, the file's `predictions` kernel shape (None: no top,
            or not loaded yet).
        remote: `fetch.Remote` or None: the published file the weights were
            fetched as (`imagenet`, `torchvision...`), for the record.
    """

    source: str
    kind: str
    path: str
    variant: str | None
    variant_from_weights: bool
    top_replaced: bool | None = None
    file_top: tuple[int, ...] | None = None
    remote: fetch.Remote | None = None

    def describe(self) -> str:
        """One line for the train stage's progress output."""
        variant = (f"variant {self.variant}" + (" (set from the weights; model.variant was "
                                                "unset)" if self.variant_from_weights else "")
                   if self.variant else "variant as configured")
        if self.top_replaced is None:
            top = "not loaded yet"
        elif not self.top_replaced:
            top = f"{TOP} loaded from the file"
        else:
            top = (f"new {TOP} for the dataset's classes (the file's kernel "
                   f"{'is ' + str(self.file_top) if self.file_top else 'is absent'})")
        return f"weights: {KINDS[self.kind]} {self.path}; {variant}; {top}"


IMAGENET_CLASSES = 1000  # keras.applications' full files hold a top for these


def resolve(model_config, *, num_classes=None) -> PretrainedWeights | None:
    """Decides the kind, file and variant of `model_config.weights`, before building.

    `imagenet` holds keras.applications' layout (`v1`, `v2` for the v2 nets),
    torchvision's weights and checkpoints `v1.5`, an `.h5` of this package's
    layout what its `conv1_conv` says (a bias: `v1`; none: `v1.5`). `imagenet`
    and `torchvision[:NAME]` are fetched into the Keras cache when missing
    (`resnet_keras.fetch`; torchvision's converted once, which needs torch).

    Args:
        model_config: a `job.config.ModelConfig`.
        num_classes: int, the dataset's classes: with ImageNet's 1000 the top is
            kept and `imagenet` fetches keras.applications' full file, with any
            other number the top is new and it fetches the `_notop` file (about
            10% smaller), as keras.applications does; None: the full file.

    Returns:
        `PretrainedWeights` (`top_replaced` still None), or None without weights.

    Raises:
        FileNotFoundError: the file does not exist; for published weights not
            cached with downloads off, the message names the URL and where to
            put the file.
        fetch.DownloadError: published weights could not be downloaded, or
            their hash did not match.
        ValueError: a file in no supported format (whatever its suffix), a
            net the weights are not published for, a corrupt `.h5`, or a
            `model.variant` that conflicts with the weights' (the message
            names both).
    """
    source = model_config.weights
    if not source:
        return None
    spec = get_spec(model_config.name)
    remote = None
    if source == TORCHVISION or source.startswith(TORCHVISION + ":"):
        kind, variant = "torchvision_imagenet", "v1.5"
        tag = source.partition(":")[2] or TORCHVISION_DEFAULT
        if spec.name not in convert.TORCHVISION_WEIGHTS:
            raise ValueError(f"model.weights={source}: torchvision publishes ImageNet weights "
                             f"for {', '.join(convert.TORCHVISION_WEIGHTS)}, not {spec.name}.")
        _check_variant(model_config, variant)
        path, remote = convert.torchvision_weights(spec.name, tag)
    elif source == IMAGENET:
        kind = "imagenet"
        if spec.keras_applications is None:
            published = [name for name, row in REGISTRY.items() if row.keras_applications]
            raise ValueError(f"model.weights=imagenet: keras.applications publishes ImageNet "
                             f"weights for {', '.join(published)}, not {spec.name}. For the "
                             f"torchvision nets give their checkpoint, e.g. --model.weights "
                             f"{spec.name}.pth.")
        variant = "v2" if spec.family == "v2" else "v1"
        _check_variant(model_config, variant)
        remote = _imagenet_file(spec, variant, keep_top=num_classes in (None, IMAGENET_CLASSES))
        path = remote.path
    else:
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"model.weights: weights file {path} does not exist.")
        kind = _file_kind(source, path)
        if kind == "torchvision" and spec.name not in convert.TORCHVISION_MODELS:
            raise ValueError(f"model.weights={source!r} is a torchvision checkpoint, but "
                             f"torchvision has no {spec.name}; it publishes "
                             f"{', '.join(convert.TORCHVISION_MODELS)}.")
        variant = "v1.5" if kind == "torchvision" else _h5_variant(spec, path)
        _check_variant(model_config, variant)
    return PretrainedWeights(
        source=source, kind=kind, path=path, variant=variant or model_config.variant,
        variant_from_weights=bool(variant) and model_config.variant is None, remote=remote)


def load(model, weights) -> PretrainedWeights:
    """Loads `weights` into `model`, leaving its top new where the file's does not fit.

    Whether the top is loaded is decided by comparing the file's `predictions`
    kernel shape with the model's: a file for other classes, or without a top,
    loads everything else. Every other layer must be in the file.

    Args:
        model: built by `build_model` with `weights.variant` and a top.
        weights: from `resolve`.

    Returns:
        `weights` with `top_replaced` set.

    Raises:
        FileNotFoundError, ValueError: the file is missing, unreadable, or
            does not fit the model; the message names the file or the layer.
    """
    model_top = tuple(model.get_layer(TOP).kernel.shape)
    if weights.kind == "torchvision":
        state_dict = checkpoints.read_state_dict(weights.path)
        file_top = convert.top_kernel_shape(state_dict)
        replaced = file_top != model_top
        convert.convert_torchvision_state_dict(state_dict, model,
                                               skip=(TOP,) if replaced else ())
    else:
        file_top = (weights_lib.weight_shapes(weights.path).get(TOP) or [None])[0]
        replaced = file_top != model_top
        weights_lib.load_weights(model, weights.path, skip=(TOP,) if replaced else ())
    return dataclasses.replace(weights, top_replaced=replaced, file_top=file_top)


def record(weights, *, variant) -> dict:
    """The fields `train_result.json` keeps of the weights (all None without any).

    Where they came from: `weights_url` and `weights_published_hash` (the
    published file and the hash its download was checked against; None for
    a local file), `weights_file` and `weights_sha256` (the file loaded and
    its digest now: for torchvision's weights, the converted `.h5`).

    Args:
        weights: `PretrainedWeights` after `load`, or None.
        variant: `model.variant` as configured, recorded when there are no weights.
    """
    if weights is None:
        return {"weights": None, "weights_file": None, "weights_sha256": None,
                "weights_url": None, "weights_published_hash": None, "variant": variant,
                "variant_from_weights": False, "top_replaced": None}
    published = weights.remote.record() if weights.remote else {}
    return {"weights": weights.source, "weights_file": os.path.abspath(weights.path),
            "weights_sha256": fetch.file_digest(weights.path),
            "weights_url": published.get("url"),
            "weights_published_hash": published.get("hash"),
            "variant": weights.variant, "variant_from_weights": weights.variant_from_weights,
            "top_replaced": weights.top_replaced}


def _file_kind(source, path):
    """`h5` or `torchvision` from the file's first bytes (a suffix can lie)."""
    found = weights_lib.file_format(path)
    for kind, formats in FILE_KINDS.items():
        if found in formats:
            return kind
    accepted = [name for formats in FILE_KINDS.values() for name in formats]
    hint = (" Write its weights with model.save_weights('FILE.h5') and give that."
            if found == "keras_model" else "")
    raise ValueError(f"model.weights={source!r}: "
                     f"{weights_lib.format_mismatch(path, found, accepted)}{hint}")


def _check_variant(model_config, variant):
    if variant and model_config.variant and model_config.variant != variant:
        raise ValueError(f"model.variant={model_config.variant!r} conflicts with "
                         f"model.weights={model_config.weights!r}, which holds the "
                         f"{variant!r} layout; leave model.variant unset (the weights set "
                         f"it) or set it to {variant!r}.")


def _imagenet_file(spec, variant, *, keep_top):
    """The `fetch.Remote` of keras.applications' file: the full one to keep the top, else the
    `_notop` one, or the full one where only it is cached (its top is then left out)."""
    full, notop = (weights_lib.imagenet_weights(spec, variant=variant, include_top=top)
                   for top in (True, False))
    remote = full if keep_top or (os.path.isfile(full.path)
                                  and not os.path.isfile(notop.path)) else notop
    fetch.fetch(remote, what=f"ImageNet weights for {spec.name}")
    return remote


def _h5_variant(spec, path):
    """`v1` or `v1.5` from the file's `conv1_conv` (keras.applications convs have biases)."""
    if spec.family != "v1":
        return None  # the v2 and CIFAR nets have one layout each
    conv1 = weights_lib.weight_shapes(path).get("conv1_conv")
    if conv1 is None:
        return None  # not this package's layout: loading names the missing layer
    return "v1" if len(conv1) == 2 else "v1.5"
