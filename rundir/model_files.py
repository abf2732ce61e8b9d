"""Whole-model files: the one place a Keras model is loaded from or saved to a file.

tf_keras honours `safe_mode` only inside a `.keras` zip: an HDF5 model (or a
SavedModel folder) runs the Python of its `Lambda` layers when loaded, whatever
`safe_mode` says. So `load_model` opens nothing but a real `.keras` zip whose
configuration has no `Lambda`, checked before anything is deserialized, unless
the caller passes `allow_unsafe=True` (the commands' `--allow-unsafe-model-files`).
`save_model` writes a file whole or not at all, never one with a
non-finite value, and always a float32 model: a model trained under a
mixed-precision policy is saved (and loaded) as its float32 twin, so QAT,
export and users' code never meet float16 or bfloat16 layers. `load_float_model` and
`load_qat_model` open a run's own two models and name the stage that makes a missing one.
"""

import json
import os
import zipfile

import numpy as np

from rundir.files import replacing

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_TFLITE_IDENTIFIER = b"TFL3"
_UNSAFE_OPT_IN = ("pass --allow-unsafe-model-files only if you trust whoever made the file")


class NonFiniteWeights(ValueError):
    """A model holds NaN or infinite values."""


def _has_lambda(node):
    if isinstance(node, dict):
        if node.get("class_name") in ("Lambda", "__lambda__"):
            return True
        return any(_has_lambda(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_lambda(v) for v in node)
    return False


def check_model_file(path, *, allow_unsafe=False):
    """Refuses a file that is not a safe, whole `.keras` model; imports no TensorFlow.

    Args:
        path: str or path-like.
        allow_unsafe: bool, accept HDF5, SavedModel folders and `Lambda`
            layers.

    Returns:
        str, `path`.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: a `.tflite`, an HDF5 model, a folder, a model with a
            `Lambda`, or a truncated or corrupt `.keras`; the message names the file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Model file {path} does not exist.")
    if os.path.isdir(path):
        if allow_unsafe:
            return path
        raise ValueError(f"{path} is a folder (a SavedModel?); only .keras model files are "
                         f"loaded, since a SavedModel can run code when loaded: "
                         f"{_UNSAFE_OPT_IN}.")
    with open(path, "rb") as f:
        head = f.read(8)
    if head[4:8] == _TFLITE_IDENTIFIER or path.endswith(".tflite"):
        raise ValueError(f"{path} is a TFLite file; this takes the Keras model (.keras) it was "
                         f"converted from. A .tflite is already an export: measure it with "
                         f"export.runtime.evaluate_tflite, or give the run's last.keras.")
    if head == _HDF5_SIGNATURE:
        if allow_unsafe:
            return path
        raise ValueError(f"{path} is an HDF5 model file, which runs the code of its Lambda "
                         f"layers when loaded (tf_keras ignores safe_mode for HDF5). Re-save "
                         f"it as .keras where you trust it, or {_UNSAFE_OPT_IN}.")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a whole .keras model file (not a zip archive): it is "
                         f"truncated or corrupt.")
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as e:
        raise ValueError(f"{path} is not a whole .keras model file ({e}): it is truncated or "
                         f"corrupt.") from None
    if _has_lambda(config) and not allow_unsafe:
        raise ValueError(f"{path} holds a Lambda layer, whose Python code would run when it "
                         f"is loaded; refused: {_UNSAFE_OPT_IN}.")
    return path


def load_model(path, *, allow_unsafe=False, compile=True):
    """Loads a whole model after `check_model_file`, then checks its values are finite.

    Custom objects (e.g. the QAT layers) come from the caller's
    `keras.utils.custom_object_scope`.

    Args:
        path: str or path-like, a `.keras` file.
        allow_unsafe: as `check_model_file`.
        compile: bool, as `keras.models.load_model`.

    Returns:
        The tf_keras model.

    Raises:
        FileNotFoundError, ValueError: as `check_model_file`; the file does not
            load; `NonFiniteWeights`: it holds NaN or inf.
    """
    from resnet_keras.backend import keras

    path = check_model_file(path, allow_unsafe=allow_unsafe)
    try:
        model = keras.models.load_model(path, compile=compile,
                                        safe_mode=not allow_unsafe)
    except (zipfile.BadZipFile, OSError, KeyError, EOFError, ValueError) as e:
        raise ValueError(f"{path} could not be loaded: {' '.join(str(e).split())[:300]}") from e
    bad = non_finite_variables(model)
    if bad:
        raise NonFiniteWeights(f"{path} holds NaN or inf in {len(bad)} variable(s) (first: "
                               f"{bad[0]}): it was saved from a diverged model; refused.")
    return float32_model(model)


def _float32_config(node):
    """`node` (a model config) with every layer's mixed-precision policy set to float32."""
    if isinstance(node, dict):
        return {k: "float32" if k == "dtype" and isinstance(v, dict)
                and v.get("class_name") in ("Policy", "DTypePolicy")
                else _float32_config(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_float32_config(v) for v in node]
    return node


def float32_model(model):
    """`model` itself if it computes in float32, else a float32 twin with its weights.

    Mixed precision keeps every variable in float32, so the twin computes the
    same function at full precision. A compiled model's twin is compiled with
    the same optimizer and loss, so a saved file keeps the optimizer's state
    (its step count and momentum) as a float32 model's does.
    """
    if all(layer.dtype_policy.name == "float32" for layer in model.submodules
           if hasattr(layer, "dtype_policy")):
        return model
    twin = model.__class__.from_config(_float32_config(model.get_config()))
    twin.set_weights(model.get_weights())
    if getattr(model, "compiled_loss", None) is not None:
        twin.compile(optimizer=model.optimizer, loss=model.loss)
    return twin


def non_finite_variables(model):
    """Names of the model's (and its optimizer's) variables holding NaN or inf."""
    variables = list(model.variables)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and hasattr(optimizer, "variables"):
        variables += list(optimizer.variables() if callable(optimizer.variables)
                          else optimizer.variables)
    return [v.name for v in variables
            if v.dtype.is_floating and not np.isfinite(v.numpy()).all()]


def save_model(model, path):
    """Saves `float32_model(model)`, all or nothing, and never with a non-finite value.

    The model goes to a temporary file in the same folder, then replaces
    `path`: a kill or a full disk leaves the previous file as it was.

    Raises:
        NonFiniteWeights: a variable holds NaN or inf; nothing is written.
        OSError: as `rundir.replacing`.
    """
    path = os.fspath(path)
    bad = non_finite_variables(model)
    if bad:
        raise NonFiniteWeights(f"Refusing to write {path}: {len(bad)} variable(s) hold NaN or "
                               f"inf (first: {bad[0]}); the model diverged.")
    with replacing(path) as partial:
        float32_model(model).save(partial)

def load_float_model(run, *, allow_unsafe=False):
    """The run's trained float model (`last.keras`).

    Args:
        run: a `rundir.RunDir`.
        allow_unsafe: bool, as `load_model`.

    Raises:
        FileNotFoundError: the run has no trained model; says which stage makes it.
        ValueError: the file is not a whole, safe `.keras` model.
    """
    path = run.require(run.last_model, what="trained model", stage="train")
    return load_model(path, allow_unsafe=allow_unsafe)


def load_qat_model(run, *, scope, allow_unsafe=False):
    """The run's quantization-aware model (`qat.keras`).

    Args:
        run: a `rundir.RunDir`.
        scope: the context manager that knows the QAT layers
            (`quantization.qat.quantize_scope`); the QAT stage owns them.
        allow_unsafe: bool, as `load_model`.

    Raises:
        FileNotFoundError: the run has no QAT model; says which stage makes it.
        ValueError: the file is not a whole, safe `.keras` model.
    """
    path = run.require(run.qat_model, what="QAT model", stage="qat",
                       hint=" (or leave int8_qat out of --export.variants).")
    with scope():
        return load_model(path, allow_unsafe=allow_unsafe)
