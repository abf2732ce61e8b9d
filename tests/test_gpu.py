"""Tests for export/gpu.py: Android's GPU delegate run on each file, through MediaPipe Tasks."""

import contextlib
import io

import numpy as np

from export import gpu, metadata, quantizer, tflite_file
from resnet_keras.backend import keras, tf

IMAGES = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3))

# The delegate's own log (tensorflow/lite/delegates/gpu/common/model_builder.cc),
# as MediaPipe passes it on: it lists the op types it leaves out, twice.
_LOG = """INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
ERROR: Following operations are not supported by GPU delegate:
LOG_SOFTMAX: Operation is not supported.
3 operations will run on the GPU, and the remaining 3 operations will run on the CPU.
ERROR: Following operations are not supported by GPU delegate:
LOG_SOFTMAX: Operation is not supported.
3 operations will run on the GPU, and the remaining 3 operations will run on the CPU.
"""


def test_placement_reads_the_delegates_log():
    assert gpu.placement(_LOG, ops=6) == {
        "gpu_ops": 3, "cpu_ops": 3, "fallback": {"LOG_SOFTMAX": "Operation is not supported."}}
    none = ("ERROR: Following operations are not supported by GPU delegate:\n"
            "DEQUANTIZE: Unsupported dequantization type.\n"
            "No operations will run on the GPU, and all 39 operations will run on the CPU.\n")
    assert gpu.placement(none, ops=39)["gpu_ops"] == 0
    # Silence is how the delegate says it takes every op.
    assert gpu.placement("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n",
                         ops=5) == {"gpu_ops": 5, "cpu_ops": 0, "fallback": {}}


def _classifier(tmp_path, name, head=None):
    """A small image classifier with MediaPipe's metadata; `head` goes before the softmax."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs / 255.0)
    x = keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(x))
    x = keras.layers.Softmax()(head(x) if head else x)
    data = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, x)).convert()
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(metadata.add_metadata(data, labels=list("abcd"), name=name, version="1"))
    return path


def test_a_float_model_runs_whole_on_the_gpu(tmp_path, mediapipe_pythons):
    path = _classifier(tmp_path, "plain")
    result = gpu.check(mediapipe_pythons["gpu"], path, IMAGES)
    ops = len(tflite_file.read(path).ops)
    assert (result["ops"], result["gpu_ops"], result["cpu_ops"]) == (ops, ops, 0)
    assert result["ran"] and result["error"] is None and result["images"] == 6
    assert result["agreement"] == 1.0
    assert result["runner"].startswith("MediaPipe Tasks 0.10.")
    assert "OpenGL ES 3." in result["runner"]


def test_an_op_the_delegate_leaves_out_is_named_with_its_reason(tmp_path, mediapipe_pythons):
    path = _classifier(tmp_path, "logsoftmax", tf.nn.log_softmax)
    result = gpu.check(mediapipe_pythons["gpu"], path, IMAGES)
    assert result["fallback"] == {"LOG_SOFTMAX": "Operation is not supported."}
    assert result["cpu_ops"] >= 1 and result["gpu_ops"] == result["ops"] - result["cpu_ops"]
    # MediaPipe's GPU path needs the whole graph on the GPU.
    assert not result["ran"] and result["error"] and result["agreement"] is None


def test_an_op_the_opengl_backend_cannot_compile_fails_the_run(tmp_path, mediapipe_pythons):
    path = _classifier(tmp_path, "cumsum", lambda x: tf.math.cumsum(x, axis=1))
    result = gpu.check(mediapipe_pythons["gpu"], path, IMAGES)
    assert result["gpu_ops"] == result["ops"] and result["fallback"] == {}
    assert not result["ran"] and result["error"] == "No shader implementation for cumsum"


def test_a_file_mediapipe_cannot_load_is_not_placed(tmp_path, mediapipe_pythons):
    # MediaPipe 0.10.35's runtime predates int4 tensors (tests/test_mediapipe.py).
    float_data = _classifier(tmp_path, "float").read_bytes()
    path = tmp_path / "int4.tflite"
    path.write_bytes(metadata.add_metadata(quantizer.quantize(float_data, "int4_weights"),
                                           labels=list("abcd"), name="int4", version="1"))
    result = gpu.check(mediapipe_pythons["gpu"], path, IMAGES)
    assert (result["gpu_ops"], result["cpu_ops"], result["ran"]) == (None, None, False)
    assert result["error"].startswith("MediaPipe cannot run it on the CPU either: ")


def test_the_analyzer_passes_what_the_delegate_refuses(tmp_path, mediapipe_pythons):
    # Why export/gpu.py runs the delegate: TensorFlow 2.21's model analyzer calls this
    # TOPK_V2 model compatible, and the delegate cannot convert it. If the analyzer
    # starts flagging it, it could serve where MediaPipe's environment is not built.
    path = _classifier(tmp_path, "topk", lambda x: tf.math.top_k(x, 4).values)
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        tf.lite.experimental.Analyzer.analyze(model_path=str(path), gpu_compatibility=True)
    assert "TOPK_V2" in text.getvalue() and "GPU COMPATIBILITY WARNING" not in text.getvalue()
    result = gpu.check(mediapipe_pythons["gpu"], path, IMAGES)
    assert not result["ran"] and result["error"] == "Conversion from TfLite model failed."


def test_without_an_opengl_context_nothing_is_placed(tmp_path, mediapipe_pythons, monkeypatch):
    # X11 without a display: EGL cannot start, so the delegate's silence says nothing.
    monkeypatch.setenv("EGL_PLATFORM", "x11")
    monkeypatch.delenv("DISPLAY", raising=False)
    result = gpu.check(mediapipe_pythons["gpu"], _classifier(tmp_path, "plain"), IMAGES)
    assert (result["gpu_ops"], result["cpu_ops"], result["ran"]) == (None, None, False)
    assert "EGL" in result["error"] and result["runner"].endswith("no OpenGL ES context")
