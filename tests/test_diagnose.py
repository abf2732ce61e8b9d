"""Tests for report/diagnose.py: per-layer errors of an int8 file and selective int8."""

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
def float32(model):
    return tflite.convert(model, "float32")


@pytest.fixture(scope="module")
def all_layers(model, images, float32):
    return diagnose.layer_errors(model, float32, _plain_int8(model, images), images, top_k=None)


def _plain_int8(model, images):
    return tflite.convert(model, "int8", calibration_images=images)


def test_layer_stats_are_finite_and_sorted(all_layers, model, images):
    assert len(all_layers) >= 5  # sub, mul, two convs, add, mean, dense, softmax
    keys = {"rank", "tensor_name", "keras_layers", "op_name", "tensor_index", "num_elements",
            "mean_squared_error", "rmse", "snr_db", "scale", "zero_point", "rmse_per_scale"}
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
    # The model's output is scored too: its error is the one the predictions see.
    output = _output(all_layers, _plain_int8(model, images))
    assert 0 < output["mean_squared_error"] < 0.05


def test_layer_errors_match_the_two_files_run_by_hand(model, images, float32, all_layers):
    # The validator's figure for the output, recomputed from the two files' own
    # outputs: the float32 file against the uint8 int8 file, dequantized.
    int8 = _plain_int8(model, images)
    output = _output(all_layers, int8)
    reference = _run(float32, images)
    quantized = _run(int8, images)
    mse = np.mean([np.mean((q - r) ** 2) for q, r in zip(quantized, reference)])
    assert output["mean_squared_error"] == pytest.approx(mse, rel=1e-4)
    # A file quantized worse (calibrated on dark images only) scores worse.
    dark = tflite.convert(model, "int8", calibration_images=images * 0.1)
    worse = diagnose.layer_errors(model, float32, dark, images, top_k=1)[0]
    assert worse["rmse_per_scale"] > all_layers[0]["rmse_per_scale"]


def _output(layers, data):
    (index,) = tflite_file.parse(data).outputs
    return next(layer for layer in layers if layer["tensor_index"] == index)


def _run(data, images):
    """The file's dequantized output for each image, fed as the file takes it."""
    interpreter = Interpreter(model_content=data)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    outputs = []
    for image in images:
        value = image[None]
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            value = np.clip(np.round(value / scale + zero), 0, 255).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], value)
        interpreter.invoke()
        result = interpreter.get_tensor(out["index"]).astype(np.float32)
        if out["dtype"] != np.float32:
            scale, zero = out["quantization"]
            result = (result - zero) * scale
        outputs.append(result)
    return outputs


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
        diagnose.layer_errors(model, b"", b"", images, top_k=0)
    with pytest.raises(ValueError, match="matching the model input"):
        diagnose.layer_errors(model, b"", b"", images[:, :4])


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
