"""The one place where the Keras version is chosen: Keras 2 (tf_keras).

tensorflow-model-optimization's quantization-aware training works only with
Keras 2, so every module imports `keras` and `tf` from here, never directly.
"""

import os

# Must be set before TensorFlow is first imported so that `tf.keras` (used by
# TFLiteConverter and tfmot internally) resolves to the same tf_keras package.
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf
import tf_keras as keras

__all__ = ["keras", "keras_cache_dir", "tf"]


def keras_cache_dir(subdir: str) -> str:
    """Where Keras caches downloads of one kind: `$KERAS_HOME/<subdir>`.

    Read at each call, so a KERAS_HOME set after import still applies.

    Args:
        subdir: str, `models` (weight files) or `datasets`, as `keras.utils.get_file`.

    Returns:
        str, the folder path; KERAS_HOME defaults to `~/.keras`, as in Keras.
    """
    return os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), subdir)
