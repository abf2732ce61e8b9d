"""Tests for report/diagnose.py: per-layer int8 errors and selective int8."""

import math

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from export import tflite, tflite_file
from report import diagnose
from resnet_keras.backend import keras

layers = keras.layers


@pytest.fixture(scope="module")
def model():
    """A tiny ResNet-shaped model: Normalization, conv-BN-ReLU, residual add, head."""
    keras.utils.set_random_seed(0)
    inputs = layers.Input((8, 8, 3), name="input")
    x = layers.Normalization(mean=[127.5] * 3, variance=[127.5 ** 2] * 3,
                             name="preprocess_normalize")(inputs)
    x = layers.Conv2D(8, 3, padding="same", name="conv1_conv")(x)
    x = layers.BatchNormalization(name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    y = layers.Conv2D(8, 3, padding="same", name="conv2_conv")(x)
    x = layers.Add(name="add")([x, y])
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(4, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="tiny")


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (8, 8, 8, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def all_layers(model, images):
    return diagnose.layer_errors(model, images, top_k=None)


def _plain_int8(model, images):
    return tflite.convert(model, "int8", calibration_images=images)


def test_layer_stats_are_finite_and_sorted(all_layers):
    assert len(all_layers) >= 5  # sub, mul, two convs, add, mean, dense, softmax
    keys = {"rank", "tensor_name", "keras_layers", "op_name", "tensor_index", "num_elements",
            "stddev", "mean_error", "max_abs_error", "mean_squared_error", "rmse", "scale",
            "zero_point", "rmse_per_scale"}
    for rank, layer in enumerate(all_layers, start=1):
        assert set(layer) == keys and layer["rank"] == rank
        for key in keys - {"rank", "tensor_name", "keras_layers", "op_name"}:
            assert isinstance(layer[key], (int, float)) and math.isfinite(layer[key]), key
        assert layer["rmse"] == pytest.approx(math.sqrt(layer["mean_squared_error"]))
        assert layer["rmse_per_scale"] == pytest.approx(layer["rmse"] / layer["scale"])
    ranked = [layer["rmse_per_scale"] for layer in all_layers]
    assert ranked == sorted(ranked, reverse=True)
    ops = {layer["op_name"] for layer in all_layers}
    assert {"CONV_2D", "ADD", "FULLY_CONNECTED"} <= ops
    conv2 = next(layer for layer in all_layers if "conv2_conv" in layer["keras_layers"])
    assert conv2["op_name"] == "CONV_2D"


def test_top_k_and_pick_denylist(model, images, all_layers):
    named = [layer for layer in all_layers if layer["keras_layers"]]
    assert [layer["tensor_name"] for layer in named[:3]] == \
        diagnose.pick_denylist(all_layers, count=3, skip_preprocessing=False)
    worst = named[0]["rmse_per_scale"]
    assert diagnose.pick_denylist(all_layers, count=5, min_rmse_per_scale=worst,
                                  skip_preprocessing=False) == [named[0]["tensor_name"]]
    # The model's output tensor is named by the converter, not a layer: ranked, never
    # picked, since no denylist or recipe can name it.
    unnamed = [layer["tensor_name"] for layer in all_layers if not layer["keras_layers"]]
    assert unnamed and not set(unnamed) & set(
        diagnose.pick_denylist(all_layers, count=len(all_layers), skip_preprocessing=False))
    # The input normalization is ranked but never picked by default.
    assert any("preprocess_normalize" in layer["keras_layers"] for layer in all_layers)
    picked = diagnose.pick_denylist(all_layers, count=len(all_layers))
    assert picked and not any("preprocess_normalize" in name for name in picked)
    with pytest.raises(ValueError, match="count"):
        diagnose.pick_denylist(all_layers, count=0)
    with pytest.raises(ValueError, match="top_k"):
        diagnose.layer_errors(model, images, top_k=0)
    with pytest.raises(ValueError, match="matching the model input"):
        diagnose.layer_errors(model, images[:, :4])


def test_selective_int8_keeps_the_denylist_in_float(model, images, all_layers):
    convs = [layer["tensor_name"] for layer in all_layers if layer["op_name"] == "CONV_2D"]
    selective = diagnose.selective_int8(model, images, denylist=convs)
    assert len(selective) > len(_plain_int8(model, images))

    graph = tflite_file.parse(selective)
    float_outputs = {graph.tensors[op.outputs[0]].name for op in graph.ops
                     if op.name == "CONV_2D" and graph.tensors[op.outputs[0]].dtype == "FLOAT32"}
    assert set(convs) <= float_outputs
    interpreter = Interpreter(model_content=selective)
    interpreter.allocate_tensors()
    # It runs: raw float pixels in, probabilities out, close to the Keras model.
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.set_tensor(inp["index"], images[:1])
    interpreter.invoke()
    scores = interpreter.get_tensor(out["index"])
    assert np.all(np.isfinite(scores))
    np.testing.assert_allclose(scores, model.predict(images[:1], verbose=0), atol=0.05)


def test_selective_int8_takes_keras_layer_names(model, images):
    selective = diagnose.selective_int8(model, images, denylist=["conv2_conv"])
    assert "DEQUANTIZE" in {op.name for op in tflite_file.parse(selective).ops}
    with pytest.raises(ValueError, match="names no quantized op"):
        diagnose.selective_int8(model, images, denylist=["no_such_layer"])
    with pytest.raises(ValueError, match="empty"):
        diagnose.selective_int8(model, images, denylist=[])
