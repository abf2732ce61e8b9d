"""A tiny classifier of raw RGB pixels as a .tflite, for the tests of files, cards and bundles.

The normalization is a layer inside the model, as in every model of the
project; `tflite_bytes` converts it as float32, or as full integer with uint8
input and output (the Edge TPU convention of the project's int8 files).
"""

import numpy as np

from resnet_keras.backend import keras, tf

LABELS = ["cat", "dog", "bird"]
VARIANTS = ("float32", "int8")


def model():
    """8x8 RGB pixels in [0, 255] -> `len(LABELS)` class probabilities."""
    layers = keras.layers
    inputs = layers.Input((8, 8, 3), name="input")
    x = layers.Normalization(mean=[127.5] * 3, variance=[127.5 ** 2] * 3)(inputs)
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(len(LABELS), activation="softmax")(x))


def tflite_bytes(variant, source=None):
    """`source` (default a new `model()`) as a .tflite of `variant`, one of `VARIANTS`."""
    converter = tf.lite.TFLiteConverter.from_keras_model(source or model())
    if variant == "int8":
        images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3)).astype(np.float32)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[None]] for image in images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    return converter.convert()
