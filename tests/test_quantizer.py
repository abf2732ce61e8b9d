"""Tests for export/quantizer.py: the variants litert-quantizer makes from the float32 file.

Their accuracy against Keras is tested with every other variant in
tests/test_tflite.py; here, what the quantizer must get right for our models.
"""

import sys

import numpy as np
import pytest

import resnet_keras as rk
from export import quantizer, tflite, tflite_file
from resnet_keras.backend import keras


@pytest.fixture(scope="module")
def model():
    """resnet20, untrained: the graph and the input's range do not depend on the weights."""
    keras.utils.set_random_seed(0)
    return rk.build_model("resnet20", input_shape=(16, 16, 3), classes=10)


@pytest.fixture(scope="module")
def float_data(model):
    return tflite.convert(model, "float32")


@pytest.fixture(scope="module")
def dim_images():
    """Calibration images no brighter than 200: a range taken from them would clip 255."""
    return np.random.default_rng(0).uniform(0, 200, (8, 16, 16, 3)).astype(np.float32)


def _input(graph):
    return graph.tensors[graph.inputs[0]]


def _input_quantize(graph):
    """The tensor a QUANTIZE op makes of the float input."""
    op = next(op for op in graph.ops if graph.inputs[0] in op.inputs)
    assert op.name == "QUANTIZE", op.name
    return graph.tensors[op.outputs[0]]


def test_int16x8_input_covers_every_pixel_whatever_the_calibration(float_data, dim_images):
    graph = tflite_file.parse(quantizer.quantize(float_data, "int16x8",
                                                 calibration_images=dim_images))
    assert _input(graph).dtype == "FLOAT32"  # what MediaPipe Tasks can feed
    assert graph.tensors[graph.outputs[0]].dtype == "FLOAT32"
    quantized = _input_quantize(graph)
    assert quantized.dtype == "INT16" and quantized.zero_points == (0,)
    # Symmetric int16: 255 maps onto the largest code, not past it.
    assert quantized.scales[0] * 32767 == pytest.approx(255.0, rel=1e-6)
    convs = [op for op in graph.ops if op.name == "CONV_2D"]
    assert convs and all(graph.tensors[op.outputs[0]].dtype == "INT16" for op in convs)
    assert all(graph.tensors[op.inputs[1]].dtype == "INT8" for op in convs)


def test_int4_weights_on_every_conv_and_dense(model, float_data):
    data = quantizer.quantize(float_data, "int4_weights")
    convs = sum(isinstance(layer, keras.layers.Conv2D) for layer in model.layers)
    assert quantizer.int4_ops(data) == {"CONV_2D": convs, "FULLY_CONNECTED": 1}
    assert quantizer.int4_ops(float_data) == {}
    assert _input(tflite_file.parse(data)).dtype == "FLOAT32"
    assert len(data) < 0.2 * len(float_data)


@pytest.mark.parametrize("variant, kwargs, message", [
    ("int8", {}, "made by the TFLite converter; litert-quantizer makes int16x8, int4_weights"),
    ("int4", {}, "Unknown variant 'int4'"),
    ("int16x8", {}, "Variant int16x8 needs calibration_images"),
])
def test_quantize_refuses(float_data, variant, kwargs, message):
    with pytest.raises(ValueError, match=message):
        quantizer.quantize(float_data, variant, **kwargs)


def test_missing_package_says_how_to_install(float_data, monkeypatch):
    monkeypatch.setitem(sys.modules, "litert_quantizer", None)
    with pytest.raises(ImportError, match="need litert-quantizer: pip install -r requirements"):
        quantizer.quantize(float_data, "int4_weights")


def test_converter_leaves_the_quantizer_variants_to_it(model):
    with pytest.raises(ValueError, match="made by litert-quantizer"):
        tflite.configured_converter(model, "int16x8")


def test_selective_int8_leaves_the_named_layers_in_float(float_data, dim_images):
    kept = ["conv2_block1_1_conv", "conv2_block1_1_bn"]
    graph = tflite_file.parse(quantizer.selective_int8(float_data, calibration_images=dim_images,
                                                       keep_float=kept))
    convs = {graph.tensors[op.outputs[0]].name: op for op in graph.ops if op.name == "CONV_2D"}
    floating = [name for name, op in convs.items()
                if graph.tensors[op.inputs[1]].dtype == "FLOAT32"]
    assert len(floating) == 1 and "/conv2_block1_1_conv/" in floating[0], floating
    assert all(graph.tensors[op.outputs[0]].dtype == "INT8" for name, op in convs.items()
               if name not in floating)
    assert _input(graph).dtype == "INT8" and _input(graph).scales[0] == pytest.approx(1.0)
    assert _input(graph).zero_points == (-128,)
    with pytest.raises(ValueError, match="keep_float is empty"):
        quantizer.selective_int8(float_data, calibration_images=dim_images, keep_float=[])
