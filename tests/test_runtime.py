"""Tests for export/runtime.py: LiteRT loads, runs, scores and times the exported files."""

import json

import numpy as np
import pytest

import resnet_keras as rk
from export import runtime, tflite, tflite_file
from resnet_keras.backend import keras


@pytest.fixture(scope="module")
def exported(finished_run):
    """resnet20's file of every variant at digits' 32x32 input, 10 classes: the quick job's.

    Barely trained: the runtime only loads, runs and times files, and the graph
    of each variant (its ops, what XNNPACK takes) does not depend on the weights.
    """
    run_dir, _ = finished_run
    manifest = json.loads((run_dir / "export" / "manifest.json").read_text())
    return {variant: str(run_dir / "export" / name) for variant, name in manifest.items()}


def test_predict_and_evaluate_run_every_variant(exported):
    images = np.random.default_rng(1).uniform(0, 255, (6, 32, 32, 3)).astype(np.float32)
    labels = np.arange(6) % 10
    for variant, path in exported.items():
        interpreter = runtime.load_interpreter(path)
        assert interpreter.get_input_details()[0]["shape"].tolist() == [1, 32, 32, 3]
        scores = runtime.predict_tflite(interpreter, images)
        assert scores.shape == (6, 10) and scores.dtype == np.float32, variant
        # Softmax outputs, dequantized for the integer files.
        np.testing.assert_allclose(scores.sum(-1), 1.0, atol=0.05, err_msg=variant)
        np.testing.assert_array_equal(runtime.predict_tflite(path, images.round().astype(
            np.uint8)), runtime.predict_tflite(path, images.round()), err_msg=variant)
        result = runtime.evaluate_tflite(path, images, labels, reference_predictions=scores)
        assert result["agreement"] == 1.0 and result["max_abs_diff"] == 0.0, variant
    with pytest.raises(ValueError, match="Got 6 images but 5 labels"):
        runtime.evaluate_tflite(exported["float32"], images, labels[:5])


def test_classification_metrics_counts_top1_top5_and_agreement():
    scores = np.eye(8, dtype=np.float32)[[0, 1, 2, 3]] + np.linspace(0, 0.5, 8)[None]
    labels = np.array([0, 1, 7, 4])
    reference = np.eye(8, dtype=np.float32)[[0, 2, 2, 3]]
    result = runtime.classification_metrics(scores, labels, reference_predictions=reference)
    assert result["top1"] == 0.5  # images 0 and 1
    # top-5 of each row: its one-hot class and the largest offsets (classes 7, 6, 5, 4).
    assert result["top5"] == 1.0
    assert result["agreement"] == 0.75  # image 1: 1 against 2
    assert result["max_abs_diff"] == pytest.approx(1.0 + 1 / 14)
    assert runtime.classification_metrics(scores[:, :5], labels)["top5"] is None


def test_measure_latency_times_every_file(exported):
    files = {"int8": exported["int8"], "float32": exported["float32"]}
    latency = runtime.measure_latency(files, num_threads=1, runs=7, warmup=1, rounds=3)
    assert list(latency) == ["int8", "float32"]
    for stats in latency.values():
        assert set(stats) == {"median_ms", "min_ms", "max_ms"}
        assert 0 < stats["min_ms"] <= stats["median_ms"] <= stats["max_ms"]


def test_xnnpack_placement_finds_ops_left_out(tmp_path):
    # XNNPACK has no 1x1 pooling with stride 2: the pool splits the graph in two partitions.
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.MaxPooling2D(1, strides=2)(x)
    x = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    path = tmp_path / "pool.tflite"
    path.write_bytes(tflite.convert(keras.Model(inputs, x), "float32"))
    placement = runtime.xnnpack_placement(path)
    assert placement["not_delegated"] == {"MAX_POOL_2D": 1}
    assert placement["partitions"] == 2
    assert placement["delegated"] == placement["ops"] - 1


# resnet20's option-A shortcuts are 1x1 stride-2 CONV_2D ops, which XNNPACK takes: one
# partition. Integer files keep their uint8<->int8 QUANTIZE ends and the int8 SOFTMAX
# outside it (a 1x1 stride-2 MAX_POOL_2D, the shortcut before, would cut it in three).
_RESNET20_LEFT_OUT = {"float32": {}, "fp16": {}, "dynamic": {},
                      "int8": {"QUANTIZE": 2, "SOFTMAX": 1},
                      "int8_qat": {"QUANTIZE": 2, "SOFTMAX": 1},
                      # Its float<->int8 ends are XNNPACK's; the int8 SOFTMAX cuts it in two.
                      "int8_float_io": {"SOFTMAX": 1},
                      # XNNPACK has no int16-activation kernels: nothing of int16x8.
                      "int16x8": {"ADD": 9, "CONV_2D": 21, "DEQUANTIZE": 1, "FULLY_CONNECTED": 1,
                                  "MEAN": 1, "MUL": 1, "PAD": 2, "QUANTIZE": 1, "SOFTMAX": 1,
                                  "SUB": 1},
                      # Some int4-weight convolutions stay on LiteRT's hybrid kernels.
                      "int4_weights": {"CONV_2D": 5}}
_RESNET20_PARTITIONS = {"int8_float_io": 2, "int16x8": 0, "int4_weights": 10}


@pytest.mark.parametrize("variant", tflite.VARIANTS)
def test_xnnpack_placement_of_resnet20_files(exported, variant):
    placement = runtime.xnnpack_placement(exported[variant])
    assert placement["not_delegated"] == _RESNET20_LEFT_OUT[variant]
    assert placement["partitions"] == _RESNET20_PARTITIONS.get(variant, 1)
    assert placement["ops"] == len(tflite_file.read(exported[variant]).ops)
    if variant == "int8":
        assert runtime.xnnpack_placement(runtime.load_interpreter(exported[variant])) == \
            placement


@pytest.mark.parametrize("name, kwargs", [
    ("resnet20", {"shortcut": "B"}),  # projection shortcuts: no pooling to leave out
    ("resnet18", {}),  # ImageNet stem: its 3x3 MAX_POOL_2D is one XNNPACK takes
])
def test_xnnpack_takes_a_float32_projection_net_in_one_partition(name, kwargs, tmp_path):
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(tflite.convert(
        rk.build_model(name, input_shape=(32, 32, 3), classes=3, **kwargs), "float32"))
    placement = runtime.xnnpack_placement(path)
    assert placement["partitions"] == 1 and placement["not_delegated"] == {}
    assert placement["delegated"] == len(tflite_file.read(path).ops)


def test_predict_checks_image_shape(exported):
    with pytest.raises(ValueError, match=r"\(N, 32, 32, 3\).*\(2, 16, 16, 3\)"):
        runtime.predict_tflite(exported["float32"], np.zeros((2, 16, 16, 3), np.uint8))


def test_bad_files_get_clear_errors(exported, tmp_path):
    data = open(exported["int8"], "rb").read()
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match="truncated.tflite is not a valid TFLite model"):
        runtime.load_interpreter(truncated)
    text = tmp_path / "notes.tflite"
    text.write_text("this is a text file, not a model\n")
    with pytest.raises(ValueError, match="notes.tflite is not a TFLite model.*TFL3"):
        runtime.load_interpreter(text)
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="not a TFLite model"):
        runtime.predict_tflite(empty, np.zeros((1, 32, 32, 3), np.uint8))
    with pytest.raises(FileNotFoundError, match="missing.tflite does not exist"):
        runtime.load_interpreter(tmp_path / "missing.tflite")
