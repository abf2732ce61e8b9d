"""Tests for export/gpu.py: the GPU delegate's op check, read from TensorFlow Lite's analyzer."""

import pytest

from export import gpu, tflite, tflite_file
from resnet_keras.backend import keras

# The analyzer's layout (tensorflow/lite/python/analyzer_wrapper/model_analyzer.cc).
_TEXT = """=== TFLite ModelAnalyzer ===

Your TFLite model has '1' subgraph(s). In the subgraph description below,
T# represents the Tensor numbers.
Subgraph#0 main(T#0) -> [T#3]
  Op#0 QUANTIZE(T#0) -> [T#1]
GPU COMPATIBILITY WARNING: Not supported op QUANTIZE
  Op#1 CONV_2D(T#1, T#4, T#5) -> [T#2]
  Op#2 my_custom(T#2) -> [T#3]
GPU COMPATIBILITY WARNING: Not supported custom op my_custom

GPU COMPATIBILITY WARNING: Subgraph#0 has GPU delegate compatibility issues at nodes 0, 2 \
with TFLite runtime version 2.21.0

Tensors of Subgraph#0
  T#0(input) shape:[1, 8, 8, 3], type:FLOAT32
"""


def test_parse_attaches_each_warning_to_its_op():
    result = gpu.parse(_TEXT)
    assert (result["ops"], result["gpu_ops"], result["compatible"]) == (3, 1, False)
    assert result["fallback_ops"] == {"QUANTIZE": 1, "my_custom": 1}
    assert result["fallback"][1] == {"index": 2, "op": "my_custom",
                                     "reason": "Not supported custom op my_custom"}


def test_parse_refuses_a_text_without_ops():
    with pytest.raises(RuntimeError, match="listed no op of m.tflite; its output format"):
        gpu.parse("=== TFLite ModelAnalyzer ===\nFailed to mmap the given model buffer.",
                  source="m.tflite")


def test_check_reads_a_real_file(tmp_path):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    path = tmp_path / "m.tflite"
    path.write_bytes(tflite.convert(keras.Model(inputs, x), "float32"))
    result = gpu.check(path)
    assert result["ops"] == len(tflite_file.read(path).ops)
    assert result["compatible"] and result["fallback"] == []
    assert result["checker"].startswith("tf.lite.experimental.Analyzer (TensorFlow 2.")


def test_the_analyzer_passes_a_flex_op_so_the_report_calls_its_check_weak(tmp_path):
    # The report's GPU section says the analyzer's check is no proof. If this starts
    # failing, the analyzer flags Flex ops and that caveat should be revisited.
    tf = pytest.importorskip("tensorflow")

    @tf.function(input_signature=[tf.TensorSpec([2, 2, 2], tf.float32)])
    def determinant(x):
        return tf.linalg.det(x) + 1.0

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [determinant.get_concrete_function()], determinant)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                           tf.lite.OpsSet.SELECT_TF_OPS]
    path = tmp_path / "flex.tflite"
    path.write_bytes(converter.convert())
    assert "CUSTOM:FlexMatrixDeterminant" in [op.name for op in tflite_file.read(path).ops]
    assert gpu.check(path)["compatible"]
