"""The models a run directory holds, loaded safely, with the error that names the missing stage.

    >>> model = load_float_model(run)
    >>> qat = load_qat_model(run, scope=quantization.qat.quantize_scope)
"""

from rundir import model_files


def load_float_model(run, *, allow_unsafe=False):
    """The run's trained float model (`last.keras`).

    Args:
        run: a `rundir.RunDir`.
        allow_unsafe: bool, as `rundir.model_files.load_model`.

    Raises:
        FileNotFoundError: the run has no trained model; says which stage makes it.
        ValueError: the file is not a whole, safe `.keras` model.
    """
    path = run.require(run.last_model, what="trained model", stage="train")
    return model_files.load_model(path, allow_unsafe=allow_unsafe)


def load_qat_model(run, *, scope, allow_unsafe=False):
    """The run's quantization-aware model (`qat.keras`).

    Args:
        run: a `rundir.RunDir`.
        scope: the context manager that knows the QAT layers
            (`quantization.qat.quantize_scope`); the QAT stage owns them.
        allow_unsafe: bool, as `rundir.model_files.load_model`.

    Raises:
        FileNotFoundError: the run has no QAT model; says which stage makes it.
        ValueError: the file is not a whole, safe `.keras` model.
    """
    path = run.require(run.qat_model, what="QAT model", stage="qat",
                       hint=" (or leave int8_qat out of --export.variants).")
    with scope():
        return model_files.load_model(path, allow_unsafe=allow_unsafe)
