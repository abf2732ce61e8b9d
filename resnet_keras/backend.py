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

__all__ = ["keras", "tf"]
