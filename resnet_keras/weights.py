"""Loads `.h5` weight files by layer name, checking every layer and shape.

Keras's own `load_weights(by_name=True)` silently skips layers it cannot
find; here a file that does not fit the model is an error naming the layer.
Every weights file is recognised by its first bytes, never by its suffix, and
refused if a tensor holds NaN or inf.
"""

import os
import zipfile

import h5py
import numpy as np

from resnet_keras import fetch
from resnet_keras.backend import keras_cache_dir
from resnet_keras.blocks import SUBSAMPLE

KERAS_APPLICATIONS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
# keras.applications' md5 of each ImageNet file, (with top, without top), as
# keras/applications/resnet.py checks them (`WEIGHTS_HASHES`).
KERAS_APPLICATIONS_HASHES = {
    "resnet50": ("2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"),
    "resnet101": ("f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21"),
    "resnet152": ("100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
    "resnet50v2": ("3ef43a0b657b3be2300d5770ece849e0", "fac2f116257151a9d068a22e544a4917"),
    "resnet101v2": ("6343647c601c52e1368623803854d971", "c0ed64b8031c3730f411d2eb4eea35b5"),
    "resnet152v2": ("a49b44d1979771252814e80f8ec446f9", "ed17cf2e0169df9d443503ef94b23b33"),
}
# What `file_format` recognises, in words. A `.keras` model archive is not a
# weights file, but is recognised so that its message can say how to get one.
FORMATS = {
    "hdf5": "Keras .h5 weights file (HDF5)",
    "safetensors": "safetensors file",
    "torch_zip": "PyTorch checkpoint (torch.save zip)",
    "torch_pickle": "legacy PyTorch checkpoint (torch.save pickle)",
    "keras_model": "Keras .keras model archive",
}
# The formats of torchvision checkpoints, which `resnet_keras.convert` reads.
CHECKPOINT_FORMATS = ("safetensors", "torch_zip", "torch_pickle")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_ZIP_SIGNATURE = b"PK\x03\x04"
_PICKLE_PROTO = 0x80  # pickle protocol 2+ opens with PROTO; torch's legacy format uses 2


def file_format(path) -> str | None:
    """The format of a weights file, read from its first bytes whatever its suffix.

    A suffix can lie (a `.safetensors` renamed `.pth`), a signature cannot:
    safetensors opens with its 8-byte little-endian header length and the
    JSON header's `{`; torch.save writes a zip (or, before PyTorch 1.6, a
    pickle); HDF5 puts its signature at byte 0, 512, 1024, 2048, ...

    Args:
        path: str or path-like, an existing file.

    Returns:
        a key of `FORMATS`, or None when no signature matches.
    """
    with open(path, "rb") as f:
        head = f.read(9)
        if head.startswith(_ZIP_SIGNATURE):
            return _zip_format(path)
        if len(head) == 9 and head[8:9] == b"{":
            return "safetensors"
        if len(head) >= 2 and head[0] == _PICKLE_PROTO and 2 <= head[1] <= 5:
            return "torch_pickle"
        size = os.fstat(f.fileno()).st_size
        offset = 0
        while offset + len(_HDF5_SIGNATURE) <= size:
            f.seek(offset)
            if f.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE:
                return "hdf5"
            offset = max(512, 2 * offset)
    return None


def _zip_format(path):
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return "torch_zip"  # a truncated checkpoint: torch.load says so
    if "config.json" in names and not any(n.endswith("data.pkl") for n in names):
        return "keras_model"
    return "torch_zip"


def format_mismatch(path, found, accepted) -> str:
    """The sentence for a file whose `file_format` is `found`, not one of `accepted`."""
    words = ", ".join(FORMATS[name] for name in accepted)
    if found is not None:
        return f"{path} is a {FORMATS[found]}, not one of the formats read here: {words}."
    with open(path, "rb") as f:
        head = f.read(16)
    opening = f"begins with {head!r}" if head else "is empty"
    return (f"{path} is in none of the formats read here ({words}): it {opening} "
            f"(truncated or corrupt, or another kind of file?).")


def check_finite(path, tensors) -> None:
    """Refuses a weights file whose floating tensors hold NaN or inf.

    Such weights would load, then train as a divergence at the first step; a
    check at load blames the file instead of the learning rate.

    Args:
        path: str, the file, for the message.
        tensors: iterable of (name in the file, numpy array).

    Raises:
        ValueError: a tensor holds NaN or inf; the message names the file and
            the tensor.
    """
    for name, array in tensors:
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            bad = array.size - np.count_nonzero(np.isfinite(array))
            raise ValueError(f"{path} holds NaN or inf in tensor {name!r} ({bad:,} of "
                             f"{array.size:,} values); refused: the file is corrupt or "
                             f"was saved from a diverged run.")


def imagenet_weights(spec, *, variant, include_top) -> fetch.Remote:
    """The keras.applications ImageNet file for `spec`: its URL, md5 and place in the Keras cache.

    Args:
        spec: a `ModelSpec` with `keras_applications` set.
        variant: `v1` or `v2`, the layouts keras.applications publishes.
        include_top: bool, the file with the 1000-class `predictions` or the `_notop` one.

    Raises:
        ValueError: keras.applications has no weights for this net or variant.
    """
    if spec.keras_applications is None or variant not in ("v1", "v2"):
        raise ValueError(
            f"keras.applications publishes no ImageNet weights for {spec.name} "
            f"(variant {variant}). Convert torchvision's with "
            f"`python -m resnet_keras.convert --model {spec.name} --checkpoint FILE.pth "
            f"--output FILE.h5` and pass weights='FILE.h5' with variant='v1.5'.")
    suffix = "" if include_top else "_notop"
    file_name = f"{spec.name}_weights_tf_dim_ordering_tf_kernels{suffix}.h5"
    return fetch.Remote(url=KERAS_APPLICATIONS_URL + file_name,
                        file_hash=KERAS_APPLICATIONS_HASHES[spec.name][0 if include_top else 1],
                        path=os.path.join(keras_cache_dir("models"), file_name))


def imagenet_weights_path(spec, *, variant, include_top) -> str:
    """Path of the keras.applications ImageNet weights for `spec`, downloaded on first use.

    The file goes into the Keras cache (`$KERAS_HOME/models`) through
    `fetch.fetch`, checked against keras.applications' own md5.

    Raises:
        ValueError: keras.applications has no weights for this net or variant.
        FileNotFoundError: not cached and downloads are off; the message
            names the URL and where to put the file.
        fetch.DownloadError: the download failed or its hash did not match.
    """
    remote = imagenet_weights(spec, variant=variant, include_top=include_top)
    return fetch.fetch(remote, what=f"ImageNet weights for {spec.name}")


def _read_h5(path, *, arrays=True):
    """{layer name: [arrays]} (or [shapes]) from a Keras 2 `.h5` weights or model file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it is not a readable Keras `.h5` file (truncated, corrupt,
            another format), or an array holds NaN or inf; the message names
            the file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Weights file {path} does not exist.")
    found = file_format(path)
    if found in CHECKPOINT_FORMATS:
        raise ValueError(f"{path} is a {FORMATS[found]}, not a {FORMATS['hdf5']}: convert "
                         f"it with `python -m resnet_keras.convert`.")
    if found == "keras_model":
        raise ValueError(format_mismatch(path, found, ("hdf5",)))
    try:  # anything else is for h5py to read or refuse
        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "model_weights" in f else f
            if "layer_names" not in group.attrs:
                raise ValueError(f"{path} is not a Keras .h5 weights file (no 'layer_names').")
            result = {}
            for layer_name in group.attrs["layer_names"]:
                layer_name = _text(layer_name)
                layer_group = group[layer_name]
                names = [_text(n) for n in layer_group.attrs["weight_names"]]
                if not arrays:
                    result[layer_name] = [tuple(layer_group[n].shape) for n in names]
                    continue
                result[layer_name] = [np.asarray(layer_group[n]) for n in names]
                check_finite(path, zip(names, result[layer_name]))
            return result
    except (OSError, KeyError) as e:
        raise ValueError(f"{path} is not a readable .h5 weights file (truncated or "
                         f"corrupt?): {e}") from None


def _text(name):
    return name.decode() if isinstance(name, bytes) else name


def weight_shapes(path) -> dict:
    """The weight shapes of each layer in an `.h5` file, without reading the arrays.

    Lets a caller compare a file with a model before loading it, e.g. whether
    the file's `predictions` fits the model's classes.

    Args:
        path: str or path-like, a Keras 2 `.h5` weights or model file.

    Returns:
        dict {layer name: [shape tuples]}, in the file's order.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a readable Keras `.h5` file.
    """
    return _read_h5(path, arrays=False)


def load_weights(model, path, *, skip=()) -> None:
    """Loads an `.h5` file into `model` by layer name, verifying every weight.

    Layers in the file that the model lacks (e.g. `predictions` when loading a
    full file into a model without top) are ignored; every weighted layer of
    the model must be in the file with the same shapes, except those in `skip`,
    which keep their initial weights.

    Args:
        model: a tf_keras model.
        path: str, an `.h5` file written by `save_weights`/`save` (Keras 2) or
            published by keras.applications.
        skip: names of the model's layers not to load, e.g. `("predictions",)`
            to put a new top on pretrained features.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a name in `skip` is not a layer of the model, the file is
            not a Keras `.h5` file, a weight holds NaN or inf, or a layer is
            missing or has other shapes; the message names the first such
            layer or weight.
    """
    check_skip(model, skip)
    path = os.fspath(path)
    stored = _read_h5(path)
    # An option-A shortcut's fixed kernel is part of the architecture: files
    # written when that shortcut was a max-pool do not have it, and need not.
    loaded = [layer for layer in model.layers if layer.weights and layer.name not in skip
              and not (layer.name.endswith(SUBSAMPLE) and layer.name not in stored)]
    for layer in loaded:
        expected = [tuple(w.shape) for w in layer.weights]
        if layer.name not in stored:
            raise ValueError(f"Weights file {path} does not fit model {model.name}: layer "
                             f"{layer.name!r} (weights {expected}) is not in the file.")
        found = [a.shape for a in stored[layer.name]]
        if found != expected:
            raise ValueError(f"Weights file {path} does not fit model {model.name}: layer "
                             f"{layer.name!r} expects weights of shapes {expected}, the file "
                             f"has {found}.")
    for layer in loaded:
        layer.set_weights(stored[layer.name])


def check_skip(model, skip) -> None:
    """Checks a `skip` argument of the weight loaders against `model`.

    A misspelt name would otherwise load every layer, the one meant included.

    Raises:
        ValueError: `skip` is a string, or names a layer `model` does not have.
    """
    if isinstance(skip, str):
        raise ValueError(f"skip must be a tuple of layer names, got the string {skip!r}; "
                         f"write skip=({skip!r},).")
    names = {layer.name for layer in model.layers}
    unknown = [name for name in skip if name not in names]
    if unknown:
        raise ValueError(f"skip={tuple(skip)!r} names {unknown[0]!r}, which is not a layer "
                         f"of model {model.name}.")
