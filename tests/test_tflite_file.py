"""Tests for export/tflite_file.py: ops, versions and tensors of a .tflite, and bad files."""

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from export import tflite, tflite_file
from resnet_keras.backend import keras

layers = keras.layers


@pytest.fixture(scope="module")
def tiny_int8():
    """Conv-ReLU, global pool and a dense softmax, full integer with uint8 IO."""
    keras.utils.set_random_seed(0)
    inputs = layers.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(3, activation="softmax", name="dense")(x)
    images = np.random.default_rng(0).uniform(0, 255, (4, 8, 8, 3)).astype(np.float32)
    return tflite.convert(keras.Model(inputs, outputs), "int8", calibration_images=images)


def _pack(model):
    """A `schema.ModelT` written back as .tflite bytes."""
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=tflite_file.IDENTIFIER)
    return bytes(builder.Output())


def test_ops_and_versions_match_litert(tiny_int8):
    graph = tflite_file.parse(tiny_int8)
    names = [op.name for op in graph.ops]
    assert names == ["QUANTIZE", "CONV_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX", "QUANTIZE"]
    assert [op.index for op in graph.ops] == list(range(len(names)))
    assert all(op.version >= 1 for op in graph.ops)
    assert next(op for op in graph.ops if op.name == "CONV_2D").version >= 3  # int8 kernels
    conv = graph.ops[1]
    assert conv.options.fusedActivationFunction == schema.ActivationFunctionType.RELU
    interpreter = Interpreter(model_content=tiny_int8)
    for op, node in zip(graph.ops, tflite_file.runtime_nodes(interpreter)):
        assert (op.name, op.inputs, op.outputs) == (node.name, node.inputs, node.outputs)
    assert graph.num_subgraphs == 1 and graph.size_bytes == len(tiny_int8)


def test_tensors_match_litert(tiny_int8):
    graph = tflite_file.parse(tiny_int8)
    interpreter = Interpreter(model_content=tiny_int8)
    for detail in interpreter.get_tensor_details():
        tensor = graph.tensors[detail["index"]]
        assert tensor.name == detail["name"]
        assert tensor.dtype.lower() == np.dtype(detail["dtype"]).name
        assert list(tensor.shape) == detail["shape"].tolist()
        np.testing.assert_array_equal(tensor.scales,
                                      detail["quantization_parameters"]["scales"])
        np.testing.assert_array_equal(tensor.zero_points,
                                      detail["quantization_parameters"]["zero_points"])
    source = graph.tensors[graph.inputs[0]]
    assert source.dtype == "UINT8" and source.shape == source.shape_signature == (1, 8, 8, 3)
    assert not source.is_constant and source.value is None
    weights = graph.tensors[graph.ops[1].inputs[1]]
    assert weights.is_constant and weights.dtype == "INT8" and weights.quantized
    assert weights.value.shape == (4, 3, 3, 3)  # OHWI
    assert len(weights.scales) == 4  # one scale per output channel


def test_read_a_file_names_it(tiny_int8, tmp_path):
    path = tmp_path / "tiny.tflite"
    path.write_bytes(tiny_int8)
    graph = tflite_file.read(path)
    assert graph.source == str(path) and graph == tflite_file.parse(tiny_int8, source=str(path))


def test_custom_op_is_named_by_its_code(tiny_int8):
    model = schema.ModelT.InitFromPackedBuf(tiny_int8, 0)
    code = model.operatorCodes[model.subgraphs[0].operators[2].opcodeIndex]
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = "edgetpu-custom-op"
    graph = tflite_file.parse(_pack(model))
    assert graph.ops[2].name == "CUSTOM:edgetpu-custom-op"


@pytest.mark.parametrize("mangle, exception, message", [
    pytest.param(lambda data: data[:len(data) // 2], ValueError,
                 "bad.tflite is not a valid TFLite model \\(truncated", id="truncated"),
    pytest.param(lambda data: b"not a model, just text\n", ValueError,
                 "bad.tflite is not a TFLite model: .*TFL3", id="not-tflite"),
    pytest.param(lambda data: b"", ValueError, "bad.tflite is not a TFLite model", id="empty"),
])
def test_bad_files_get_one_line_errors(tiny_int8, tmp_path, mangle, exception, message):
    path = tmp_path / "bad.tflite"
    path.write_bytes(mangle(tiny_int8))
    with pytest.raises(exception, match=message) as error:
        tflite_file.read(path)
    assert "\n" not in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.tflite does not exist"):
        tflite_file.read(tmp_path / "missing.tflite")


def test_no_subgraph(tiny_int8):
    model = schema.ModelT.InitFromPackedBuf(tiny_int8, 0)
    model.subgraphs = []
    with pytest.raises(ValueError, match="empty.tflite has no subgraph"):
        tflite_file.parse(_pack(model), source="empty.tflite")


def test_with_float_io_wraps_integer_ends_without_changing_the_scores(tiny_int8, tmp_path):
    from export import runtime

    wrapped = tflite_file.with_float_io(tiny_int8)
    graph, original = tflite_file.parse(wrapped), tflite_file.parse(tiny_int8)
    image, scores = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    assert (image.dtype, scores.dtype) == ("FLOAT32", "FLOAT32")
    assert image.name == original.tensors[original.inputs[0]].name
    assert [graph.ops[0].name, graph.ops[-1].name] == ["QUANTIZE", "DEQUANTIZE"]
    assert len(graph.ops) == len(original.ops) + 2
    (tmp_path / "int.tflite").write_bytes(tiny_int8)
    (tmp_path / "float.tflite").write_bytes(wrapped)
    # Integer pixels: runtime.predict_tflite's own quantization of the uint8 input is exact.
    images = np.random.default_rng(1).integers(0, 256, (5, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(runtime.predict_tflite(tmp_path / "float.tflite", images),
                               runtime.predict_tflite(tmp_path / "int.tflite", images), atol=1e-7)
    runner = Interpreter(model_content=wrapped).get_signature_runner()
    assert runner.get_input_details()[next(iter(runner.get_input_details()))]["dtype"] == \
        np.float32
    # Float ends are left alone.
    assert len(tflite_file.parse(tflite_file.with_float_io(wrapped)).ops) == len(graph.ops)
