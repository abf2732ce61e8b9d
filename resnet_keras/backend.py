"""The one place where the backend is chosen: Keras 2 (tf_keras), and TensorFlow's oneDNN kernels.

tensorflow-model-optimization's quantization-aware training works only with
Keras 2, so every module imports `keras` and `tf` from here, never directly.
oneDNN must be decided before TensorFlow loads, so it is decided here too, and
so is how much TensorFlow's C++ side prints while it loads.
"""

import contextlib
import dataclasses
import os
import re
import sys
import tempfile

from resnet_keras.cpu import architecture, this_cpu

# Must be set before TensorFlow is first imported so that `tf.keras` (used by
# TFLiteConverter and tfmot internally) resolves to the same tf_keras package.
os.environ["TF_USE_LEGACY_KERAS"] = "1"
# TensorFlow's C++ INFO lines hidden, its warnings and errors shown; a user's own level wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
# What TensorFlow 2.21 prints at INFO while loading, through absl before absl's log is
# initialized, which TF_CPP_MIN_LOG_LEVEL does not reach: absl's notice that it writes to
# stderr, and lines such as "I0000 ... port.cc:153] oneDNN custom operations are on" (the
# train stage line says that in our words).
_LOADING_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\) is "
                            r"called are written to STDERR|I\d{4} \d\d:\d\d:\d+\.\d+ .*)$")

ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
# Holds the value resnet_keras gave ONEDNN_ENV. Children inherit both, so a worker or a
# train.py started by a test re-decides as the project did, instead of reporting the
# project's choice as the user's ("as set"); a user's own value differs from it, or has none.
ONEDNN_CHOSEN_BY_US_ENV = "RESNET_KERAS_ONEDNN_OPTS"
# Linux /proc/cpuinfo flags on which TensorFlow 2.21 turns its oneDNN kernels on by itself
# (tensorflow/core/util/port.cc, DefaultOneDnnPolicy); on other x86 CPUs it leaves them off.
ONEDNN_BY_TENSORFLOW = {"avx512_vnni": "AVX512-VNNI", "avx512_bf16": "AVX512-BF16",
                        "avx_vnni": "AVX-VNNI", "amx_tile": "AMX", "amx_int8": "AMX",
                        "amx_bf16": "AMX"}


def onednn_setting(environ, *, machine: str,
                   flags: frozenset[str] | None) -> tuple[str | None, str]:
    """What `TF_ENABLE_ONEDNN_OPTS` to set before TensorFlow loads, and why.

    On x86 CPUs where TensorFlow leaves oneDNN off, it is turned on: with
    oneDNN's AVX2 kernels our ResNets trained faster than without oneDNN,
    and no less accurately (benchmarks/README.md, "Against PyTorch";
    `python -m experiments.onednn`). A value the user set always wins; one
    that `set_onednn` set in a parent process is decided again, alike.

    Args:
        environ: the process environment (a mapping).
        machine: `platform.machine()`.
        flags: the CPU's feature flags (`resnet_keras.cpu.CPU.flags`); None where unknown.

    Returns:
        (value to set, or None to leave TensorFlow's own choice; the reason).
    """
    if ONEDNN_ENV in environ and environ[ONEDNN_ENV] != environ.get(ONEDNN_CHOSEN_BY_US_ENV):
        return None, f"{ONEDNN_ENV}={environ[ONEDNN_ENV]} as set"
    if architecture(machine) != "x86":
        return None, f"TensorFlow's default on {machine}"
    if flags is None:
        return None, "TensorFlow's default: CPU features unknown"
    by_tensorflow = sorted({name for flag, name in ONEDNN_BY_TENSORFLOW.items() if flag in flags})
    if by_tensorflow:
        return None, f"TensorFlow's default on a CPU with {' and '.join(by_tensorflow)}"
    return "1", ("turned on by resnet_keras: TensorFlow leaves it off on x86 CPUs without "
                 "AVX512-VNNI, AVX512-BF16 or AMX, where our ResNets train faster with it")


def set_onednn(environ, *, machine: str, flags: frozenset[str] | None) -> str:
    """Sets `TF_ENABLE_ONEDNN_OPTS` in `environ` as `onednn_setting` decides, marked as ours.

    Args:
        environ: the environment to change (`os.environ`, which children inherit).
        machine, flags: as `onednn_setting`.

    Returns:
        str, the reason, which a child process inheriting `environ` also gives.
    """
    value, reason = onednn_setting(environ, machine=machine, flags=flags)
    if value is not None:
        environ[ONEDNN_ENV] = environ[ONEDNN_CHOSEN_BY_US_ENV] = value
    return reason


_reason = set_onednn(os.environ, machine=this_cpu().machine, flags=this_cpu().flags)


def without_loading_noise(text):
    """`text` less the INFO lines TensorFlow prints while loading (`_LOADING_NOISE`)."""
    return "".join(line for line in text.splitlines(keepends=True)
                   if not _LOADING_NOISE.match(line.rstrip("\n")))


@contextlib.contextmanager
def _quiet_loading(environ):
    """Holds back the C++ side's stderr while TensorFlow loads, then passes on all but its INFO.

    Warnings and errors still show, after the import; with TF_CPP_MIN_LOG_LEVEL=0
    the user asked for everything, and nothing is held back.
    """
    if environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            sys.stderr.write(without_loading_noise(held.read().decode(errors="replace")))
            sys.stderr.flush()


with _quiet_loading(os.environ):
    import tensorflow as tf  # noqa: E402 (after the environment it reads)
    import tf_keras as keras  # noqa: E402

__all__ = ["ONEDNN", "OneDNN", "keras", "keras_cache_dir", "tf"]


@dataclasses.dataclass(frozen=True)
class OneDNN:
    """Whether TensorFlow runs its oneDNN CPU kernels in this process, and why."""

    on: bool | None  # None: this TensorFlow does not say
    reason: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        state = {True: "on", False: "off", None: "unknown"}[self.on]
        return f"oneDNN {state} ({self.reason})"


def _onednn_in_use() -> bool | None:
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


ONEDNN = OneDNN(_onednn_in_use(), _reason)


def keras_cache_dir(subdir: str) -> str:
    """Where Keras caches downloads of one kind: `$KERAS_HOME/<subdir>`.

    Read at each call, so a KERAS_HOME set after import still applies.

    Args:
        subdir: str, `models` (weight files) or `datasets`, as `keras.utils.get_file`.

    Returns:
        str, the folder path; KERAS_HOME defaults to `~/.keras`, as in Keras.
    """
    return os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), subdir)
