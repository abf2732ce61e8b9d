"""Converts torchvision ResNet checkpoints into this package's Keras models.

torchvision's resnet18..152 are the "v1.5" layout of arXiv 1512.03385 (stride on
the bottleneck's 3x3, projection shortcuts only where the shape changes), which
`build_model(name, variant="v1.5")` reproduces layer for layer:

    python -m resnet_keras.convert --model resnet50 \\
        --checkpoint resnet50-0676ba61.pth --output resnet50_v1.5.h5
    python -c "import resnet_keras as rk; \\
        rk.build_model('resnet50', variant='v1.5', weights='resnet50_v1.5.h5')"
"""

import argparse
import logging
import os
import re
import sys

import numpy as np

from resnet_keras import fetch
from resnet_keras.backend import keras, keras_cache_dir
from resnet_keras.checkpoints import as_numpy, read_state_dict
from resnet_keras.models import PREPROCESSING, build_model
from resnet_keras.registry import REGISTRY, get_spec
from resnet_keras.weights import check_skip

# The registry rows torchvision publishes: the residual v1 ImageNet nets.
TORCHVISION_MODELS = tuple(name for name, spec in REGISTRY.items()
                           if spec.family == "v1" and spec.residual)
TORCHVISION_URL = "https://download.pytorch.org/models/"
# torchvision's ImageNet checkpoints of these nets (torchvision/models/resnet.py,
# `ResNet*_Weights`), by weights name; V2 is its 2021 recipe (arXiv 2110.00476).
TORCHVISION_WEIGHTS = {
    "resnet18": {"IMAGENET1K_V1": "resnet18-f37072fd.pth"},
    "resnet34": {"IMAGENET1K_V1": "resnet34-b627a593.pth"},
    "resnet50": {"IMAGENET1K_V1": "resnet50-0676ba61.pth",
                 "IMAGENET1K_V2": "resnet50-11ad3fa6.pth"},
    "resnet101": {"IMAGENET1K_V1": "resnet101-63fe2227.pth",
                  "IMAGENET1K_V2": "resnet101-cd907fc2.pth"},
    "resnet152": {"IMAGENET1K_V1": "resnet152-394f9c45.pth",
                  "IMAGENET1K_V2": "resnet152-f82ba261.pth"},
}
logger = logging.getLogger(__name__)
# torch.hub's convention: a checkpoint's name ends in the first digits of its sha256.
_HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")
# Keras weight name -> torchvision parameter name.
_TORCH_PARAM = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
                "moving_mean": "running_mean", "moving_variance": "running_var"}
# Bookkeeping buffers of torch's BatchNorm with nothing to load in Keras.
_IGNORED_PARAMS = ("num_batches_tracked",)
_TORCH_BN_EPSILON = 1e-5

_BLOCK_MODULE = re.compile(r"layer(\d+)\.(\d+)\.(?:(conv|bn)([123])|downsample\.([01]))")
_BLOCK_LAYER = re.compile(r"conv(\d+)_block(\d+)_(\d)_(conv|bn)")
_STEM = {"conv1": "conv1_conv", "bn1": "conv1_bn", "fc": "predictions"}


def _keras_layer_name(module):
    """`layer2.0.downsample.0` -> `conv3_block1_0_conv`; None if not a ResNet module."""
    if module in _STEM:
        return _STEM[module]
    match = _BLOCK_MODULE.fullmatch(module)
    if match is None:
        return None
    stage, block, kind, index, downsample = match.groups()
    # torchvision counts stages layer1..4 and blocks from 0; the paper conv2..5, from 1.
    prefix = f"conv{int(stage) + 1}_block{int(block) + 1}"
    if downsample is not None:
        return f"{prefix}_0_{'conv' if downsample == '0' else 'bn'}"
    return f"{prefix}_{index}_{kind}"


def _torch_module_name(layer_name):
    """Inverse of `_keras_layer_name`; None for layers torchvision does not have."""
    for module, name in _STEM.items():
        if name == layer_name:
            return module
    match = _BLOCK_LAYER.fullmatch(layer_name)
    if match is None:
        return None
    stage, block, index, kind = match.groups()
    prefix = f"layer{int(stage) - 1}.{int(block) - 1}"
    if index == "0":
        return f"{prefix}.downsample.{0 if kind == 'conv' else 1}"
    return f"{prefix}.{kind}{index}"


def _torch_shape(keras_shape, layer):
    """The torch-layout shape of a Keras weight of `layer`."""
    if isinstance(layer, keras.layers.Conv2D) and len(keras_shape) == 4:
        kh, kw, cin, cout = keras_shape
        return (cout, cin, kh, kw)
    if isinstance(layer, keras.layers.Dense) and len(keras_shape) == 2:
        return tuple(reversed(keras_shape))
    return tuple(keras_shape)


def _to_keras(array, layer):
    """Reorders a torch weight for `layer`: conv OIHW -> HWIO, linear (out, in) -> (in, out)."""
    if isinstance(layer, keras.layers.Conv2D) and array.ndim == 4:
        return array.transpose(2, 3, 1, 0)
    if isinstance(layer, keras.layers.Dense) and array.ndim == 2:
        return array.T
    return array


def _check_torchvision_layout(model):
    """Raises ValueError if `model` is not built like torchvision's ResNets."""
    names = {layer.name for layer in model.layers}
    problems = []
    if "conv1_conv" not in names or "conv2_block1_1_conv" not in names:
        problems.append("it is not an ImageNet ResNet (no conv1_conv / conv2_block1_1_conv)")
    is_bottleneck = "conv2_block1_3_conv" in names
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.use_bias:
            problems.append(f"conv {layer.name!r} has a bias")
            break
    for layer in model.layers:
        if (isinstance(layer, keras.layers.BatchNormalization)
                and abs(layer.epsilon - _TORCH_BN_EPSILON) > 1e-9):
            problems.append(f"BatchNorm {layer.name!r} has epsilon {layer.epsilon}, "
                            f"not {_TORCH_BN_EPSILON}")
            break
    for layer in model.layers:
        if (is_bottleneck and isinstance(layer, keras.layers.Conv2D)
                and layer.name.endswith("_1_conv") and tuple(layer.strides) != (1, 1)):
            problems.append(f"the stride is on the bottleneck's first 1x1 ({layer.name!r}), "
                            f"torchvision puts it on the 3x3")
            break
    if "preprocess_bgr" in names:
        problems.append("its input is reordered to BGR")
    if "preprocess_normalize" in names:
        config = model.get_layer("preprocess_normalize").get_config()
        mean, std = PREPROCESSING["torch"]
        if not (np.allclose(config["mean"], mean)
                and np.allclose(config["variance"], np.square(std))):
            problems.append("its input normalization is not torchvision's ImageNet mean/std")
    if problems:
        raise ValueError(
            f"Model {model.name} is not in the torchvision layout: {'; '.join(problems)}. "
            f"Build it with build_model(name, variant='v1.5') (and the default "
            f"preprocessing).")


def top_kernel_shape(state_dict):
    """The Keras shape of the checkpoint's classifier kernel, `(features, classes)`.

    Compare it with `model.get_layer("predictions").kernel.shape` to decide
    whether the checkpoint's top fits or must be skipped.

    Args:
        state_dict: a torchvision state dict, e.g. from `read_state_dict`.

    Returns:
        tuple of int, or None if the checkpoint has no `fc.weight`.
    """
    fc_weight = state_dict.get("fc.weight")
    return None if fc_weight is None else tuple(reversed(fc_weight.shape))


def convert_torchvision_state_dict(state_dict, model, *, skip=()) -> None:
    """Loads a torchvision ResNet state dict into a Keras model, checking everything.

    Every key must land in a layer and every weighted layer must be filled, so
    a checkpoint of another depth, width or class count fails instead of
    loading half-way. `fc.*` is skipped when the model has no top
    (`include_top=False`), and the keys of every layer named in `skip`, whose
    weights stay as initialized. The model is changed only if the whole state
    dict fits.

    Args:
        state_dict: mapping of torchvision parameter names (`conv1.weight`,
            `layer1.0.bn1.running_mean`, `fc.bias`, ...) to numpy arrays or
            torch tensors, e.g. from `read_state_dict`.
        model: a model from `build_model(name, variant="v1.5")`.
        skip: names of the model's layers not to load, e.g. `("predictions",)`
            to put a new top for other classes on torchvision's features.

    Raises:
        ValueError: the model is not in the torchvision layout, a name in
            `skip` is not one of its layers, a key has no counterpart in the
            model, a layer has no weights in the state dict, or a shape
            differs; the message names the key or layer and shapes.

    Example:

    >>> model = build_model("resnet18", variant="v1.5", classifier_activation=None)
    >>> convert_torchvision_state_dict(read_state_dict("resnet18.safetensors"), model)
    """
    _check_torchvision_layout(model)
    check_skip(model, skip)
    layers_by_name = {layer.name: layer for layer in model.layers}
    groups = {}  # Keras layer name -> {torch param: (key, array)}
    for key, value in state_dict.items():
        module, _, param = key.rpartition(".")
        layer_name = _keras_layer_name(module)
        if layer_name is None:
            raise ValueError(f"State dict key {key!r} is not a torchvision ResNet parameter "
                             f"(expected conv1.*, bn1.*, layerN.i.*, fc.*): the checkpoint "
                             f"is of another architecture, or its keys carry a prefix "
                             f"other than 'module.'; strip it.")
        if param in _IGNORED_PARAMS or layer_name in skip:
            continue
        if layer_name == "predictions" and layer_name not in layers_by_name:
            continue  # include_top=False: the classifier is dropped on purpose.
        if layer_name not in layers_by_name:
            raise ValueError(f"State dict key {key!r} has no counterpart in model "
                             f"{model.name} (no layer {layer_name!r}): the checkpoint is "
                             f"of another network; check the model name.")
        groups.setdefault(layer_name, {})[param] = (key, as_numpy(value))

    assignments = []  # (Keras variable, value)
    for layer in model.layers:
        if not layer.weights or layer.name in skip:
            continue
        module = _torch_module_name(layer.name)
        if module is None:
            raise ValueError(f"Layer {layer.name!r} of {model.name} has no torchvision "
                             f"counterpart; build the model with variant='v1.5'.")
        params = groups.pop(layer.name, {})
        for weight in layer.weights:
            param = _TORCH_PARAM.get(weight.name.split("/")[-1].split(":")[0])
            if param is None:
                raise ValueError(f"Weight {weight.name!r} of {model.name} has no torchvision "
                                 f"counterpart; build the model with variant='v1.5'.")
            if param not in params:
                raise ValueError(f"State dict lacks key '{module}.{param}' for layer "
                                 f"{layer.name!r} of {model.name}: the checkpoint is "
                                 f"incomplete or of a smaller network; check the model name.")
            key, array = params.pop(param)
            expected = _torch_shape(tuple(weight.shape), layer)
            if array.shape != expected:
                hint = (" Pass classes matching the checkpoint's fc.weight."
                        if layer.name == "predictions" else " Check the model name.")
                raise ValueError(f"State dict key {key!r} has shape {tuple(array.shape)}, but "
                                 f"layer {layer.name!r} of {model.name} needs {expected} "
                                 f"(torch layout).{hint}")
            assignments.append(
                (weight, _to_keras(array, layer).astype(weight.dtype.as_numpy_dtype)))
        if params:
            key = next(iter(params.values()))[0]
            raise ValueError(f"State dict key {key!r} has no counterpart in layer "
                             f"{layer.name!r} of {model.name}, which holds only "
                             f"{[w.name for w in layer.weights]}: the checkpoint is not a "
                             f"torchvision ResNet.")
    # Everything fitted: only now touch the model, so a failure leaves it intact.
    # One batched assignment rather than one TF call per layer.
    keras.backend.batch_set_value(assignments)


def _check_model_name(model_name):
    get_spec(model_name)  # an unknown name gets the registry's message
    if model_name not in TORCHVISION_MODELS:
        raise ValueError(f"torchvision publishes no {model_name!r}; the converter handles "
                         f"{', '.join(TORCHVISION_MODELS)}.")


def convert_file(checkpoint, *, model_name, output, classes=None):
    """Converts a torchvision checkpoint into a Keras 2 `.h5` weights file.

    The `.h5` holds weights only, so the classifier activation is chosen when
    loading: the returned model (and `build_model`'s default) ends in softmax,
    while torchvision returns logits; build with `classifier_activation=None`
    to get torchvision's outputs. A checkpoint without `fc.*` gives a model
    without top.

    Args:
        checkpoint: str or path-like, a safetensors or torch.save file
            (`.safetensors`, `.pth`, `.pt`).
        model_name: one of `TORCHVISION_MODELS`, e.g. `resnet50`.
        output: str or path-like ending in `.h5`; its folder is created.
        classes: int, classes of the checkpoint's `fc`; default: read from
            `fc.weight`.

    Returns:
        The converted model, `build_model(model_name, variant="v1.5")` with
        the checkpoint's weights; the file loads later with
        `build_model(model_name, variant="v1.5", weights=output)`.

    Raises:
        FileNotFoundError: the checkpoint does not exist.
        ImportError: a torch file is given and torch is not installed.
        ValueError: an unknown model name, an output not ending in `.h5`, an
            unreadable or non-finite checkpoint, or one that does not fit the
            model.

    Example:

    >>> convert_file("resnet18-f37072fd.pth", model_name="resnet18",
    ...              output="resnet18_v1.5.h5")
    """
    _check_model_name(model_name)
    output = os.fspath(output)
    if not output.endswith(".h5"):
        raise ValueError(f"output={output!r} must end in .h5 (Keras 2 weights file).")
    state_dict = read_state_dict(checkpoint)
    fc_weight = state_dict.get("fc.weight")
    if fc_weight is None and classes is not None:
        raise ValueError(f"classes={classes} was given but {os.fspath(checkpoint)} has no "
                         f"fc.weight (it has no classifier); leave classes out.")
    if classes is None and fc_weight is not None:
        classes = int(fc_weight.shape[0])
    model = build_model(model_name, variant="v1.5", include_top=fc_weight is not None,
                        classes=classes or 1000)
    convert_torchvision_state_dict(state_dict, model)
    folder = os.path.dirname(output)
    if folder:
        os.makedirs(folder, exist_ok=True)
    model.save_weights(output)
    return model


def torchvision_checkpoint(model_name, weights="IMAGENET1K_V1") -> fetch.Remote:
    """torchvision's published ImageNet checkpoint: its URL, hash prefix and place in the cache.

    Args:
        model_name: a key of `TORCHVISION_WEIGHTS`.
        weights: str, a torchvision weights name of that net (`IMAGENET1K_V1`, `IMAGENET1K_V2`).

    Raises:
        ValueError: a net or weights name torchvision does not publish; the
            message lists the ones it does.
    """
    _check_model_name(model_name)
    published = TORCHVISION_WEIGHTS[model_name]
    if weights not in published:
        raise ValueError(f"torchvision publishes {', '.join(published)} for {model_name}, not "
                         f"{weights!r}.")
    file_name = published[weights]
    return fetch.Remote(url=TORCHVISION_URL + file_name,
                        file_hash=_HASH_IN_NAME.search(file_name).group(1),
                        path=os.path.join(keras_cache_dir("models"), file_name),
                        hash_is_prefix=True)


def torchvision_weights(model_name, weights="IMAGENET1K_V1") -> tuple[str, fetch.Remote]:
    """torchvision's ImageNet weights as this package's `.h5`, fetched and converted once.

    The checkpoint is downloaded into the Keras cache (`$KERAS_HOME/models`),
    its sha256 checked against the prefix in its name as torch.hub does, and
    converted beside it (`resnet18-f37072fd.h5`), which later runs read
    without the checkpoint or torch. Converting needs torch (the checkpoint
    is a `torch.save` file).

    Args:
        model_name, weights: as `torchvision_checkpoint`.

    Returns:
        (str, the converted `.h5`; the checkpoint's `fetch.Remote`).

    Raises:
        ValueError: as `torchvision_checkpoint`, or a checkpoint that does not convert.
        FileNotFoundError: neither file is cached and downloads are off.
        fetch.DownloadError: the download failed or its hash did not match.
        ImportError: torch is needed to convert and is not installed.
    """
    remote = torchvision_checkpoint(model_name, weights)
    converted = os.path.splitext(remote.path)[0] + ".h5"
    if not os.path.isfile(converted):
        checkpoint = fetch.fetch(remote, what=f"torchvision {weights} weights for {model_name}")
        fetch.make_once(converted, lambda partial: convert_file(
            checkpoint, model_name=model_name, output=partial))
        logger.info("  converted %s to %s", checkpoint, converted)
    return converted, remote


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        # One line instead of argparse's usage block: the same shape as other errors.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv=None) -> int:
    """Command line entry point; returns the exit status (2 on a user error)."""
    parser = _ArgumentParser(
        prog="python -m resnet_keras.convert",
        description="Convert a torchvision ResNet checkpoint into a Keras 2 .h5 weights "
                    "file for build_model(name, variant='v1.5', weights=FILE).",
        epilog="example: python -m resnet_keras.convert --model resnet50 "
               "--checkpoint resnet50-0676ba61.pth --output resnet50_v1.5.h5")
    parser.add_argument("--model", required=True,
                        help=f"network name: {', '.join(TORCHVISION_MODELS)}")
    parser.add_argument("--checkpoint", required=True,
                        help="torchvision state dict: .pth, .pt or .safetensors")
    parser.add_argument("--output", required=True, help="weights file to write, .h5")
    parser.add_argument("--classes", type=int, default=None,
                        help="classes of the checkpoint's fc (default: read from it)")
    args = parser.parse_args(argv)
    try:
        model = convert_file(args.checkpoint, model_name=args.model, output=args.output,
                             classes=args.classes)
    except (ValueError, OSError, ImportError) as e:
        message = " ".join(str(e).split())  # one line, whatever the source message
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return 2
    print(f"Wrote {args.output}: {model.name}, {model.count_params():,} parameters. "
          f"Load it with build_model({args.model!r}, variant='v1.5', "
          f"weights={args.output!r}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
