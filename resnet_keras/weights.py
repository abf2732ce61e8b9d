"""Loads `.h5` weight files by layer name, checking every layer and shape.

Keras's own `load_weights(by_name=True)` silently skips layers it cannot
find; here a file that does not fit the model is an error naming the layer.
"""

import os

import h5py
import numpy as np

from resnet_keras.backend import keras_cache_dir
from resnet_keras.blocks import SUBSAMPLE

KERAS_APPLICATIONS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"


def imagenet_weights_path(spec, *, variant, include_top) -> str:
    """Path of the keras.applications ImageNet weights for `spec` in the local cache.

    Raises:
        ValueError: keras.applications has no weights for this net or variant.
        FileNotFoundError: the file is not cached; the message says which file,
            where to put it, and where it is published.
    """
    if spec.keras_applications is None or variant not in ("v1", "v2"):
        raise ValueError(
            f"keras.applications publishes no ImageNet weights for {spec.name} "
            f"(variant {variant}). Convert torchvision's with "
            f"`python -m resnet_keras.convert --model {spec.name} --checkpoint FILE.pth "
            f"--output FILE.h5` and pass weights='FILE.h5' with variant='v1.5'.")
    suffix = "" if include_top else "_notop"
    file_name = f"{spec.name}_weights_tf_dim_ordering_tf_kernels{suffix}.h5"
    path = os.path.join(keras_cache_dir("models"), file_name)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"ImageNet weights for {spec.name} are not in the Keras cache and this machine "
            f"cannot download them. Put {file_name} at {path} (it is published at "
            f"{KERAS_APPLICATIONS_URL}{file_name}), or set KERAS_HOME to the folder "
            f"holding models/{file_name}.")
    return path


def _read_h5(path, *, arrays=True):
    """{layer name: [arrays]} (or [shapes]) from a Keras 2 `.h5` weights or model file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it is not a readable Keras `.h5` file (truncated, corrupt,
            another format); the message names the file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Weights file {path} does not exist.")
    try:
        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "model_weights" in f else f
            if "layer_names" not in group.attrs:
                raise ValueError(f"{path} is not a Keras .h5 weights file (no 'layer_names').")
            result = {}
            for layer_name in group.attrs["layer_names"]:
                layer_name = _text(layer_name)
                layer_group = group[layer_name]
                datasets = [layer_group[_text(n)] for n in layer_group.attrs["weight_names"]]
                result[layer_name] = [np.asarray(d) if arrays else tuple(d.shape)
                                      for d in datasets]
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
            not a Keras `.h5` file, or a layer is missing or has other shapes;
            the message names the first such layer.
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
