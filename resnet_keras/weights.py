"""Loads `.h5` weight files by layer name, checking every layer and shape.

Keras's own `load_weights(by_name=True)` silently skips layers it cannot
find; here a file that does not fit the model is an error naming the layer.
"""

import os

import h5py
import numpy as np

KERAS_APPLICATIONS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"


def keras_cache_dir() -> str:
    """The folder where Keras caches downloaded model files."""
    return os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "models")


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
    path = os.path.join(keras_cache_dir(), file_name)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"ImageNet weights for {spec.name} are not in the Keras cache and this machine "
            f"cannot download them. Put {file_name} at {path} (it is published at "
            f"{KERAS_APPLICATIONS_URL}{file_name}), or set KERAS_HOME to the folder "
            f"holding models/{file_name}.")
    return path


def _read_h5(path):
    """Returns {layer name: [arrays]} from a Keras 2 `.h5` weights or model file."""
    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in group.attrs:
            raise ValueError(f"{path} is not a Keras .h5 weights file (no 'layer_names').")
        result = {}
        for layer_name in group.attrs["layer_names"]:
            layer_name = layer_name.decode() if isinstance(layer_name, bytes) else layer_name
            layer_group = group[layer_name]
            weight_names = layer_group.attrs["weight_names"]
            result[layer_name] = [
                np.asarray(layer_group[n.decode() if isinstance(n, bytes) else n])
                for n in weight_names]
        return result


def load_weights(model, path) -> None:
    """Loads an `.h5` file into `model` by layer name, verifying every weight.

    Layers in the file that the model lacks (e.g. `predictions` when loading a
    full file into a model without top) are ignored; every weighted layer of
    the model must be in the file with the same shapes.

    Args:
        model: a tf_keras model.
        path: str, an `.h5` file written by `save_weights`/`save` (Keras 2) or
            published by keras.applications.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a Keras `.h5` file, or a layer is missing
            or has other shapes; the message names the first such layer.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Weights file {path} does not exist.")
    try:
        stored = _read_h5(path)
    except OSError as e:
        raise ValueError(f"{path} is not a readable .h5 weights file: {e}") from None
    for layer in model.layers:
        expected = [tuple(w.shape) for w in layer.weights]
        if not expected:
            continue
        if layer.name not in stored:
            raise ValueError(f"Weights file {path} does not fit model {model.name}: layer "
                             f"{layer.name!r} (weights {expected}) is not in the file.")
        found = [a.shape for a in stored[layer.name]]
        if found != expected:
            raise ValueError(f"Weights file {path} does not fit model {model.name}: layer "
                             f"{layer.name!r} expects weights of shapes {expected}, the file "
                             f"has {found}.")
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(stored[layer.name])
