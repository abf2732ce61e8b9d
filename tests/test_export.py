"""Tests for export/tflite.py, report/evaluate.py and `python -m export`."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import resnet_keras as rk
from datasets import load_dataset
from export import metadata, tflite, tflite_file
from quantization import qat
from report import evaluate
from resnet_keras.backend import keras

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CALIBRATION_SIZE = 128


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def test_split(digits):
    return digits.test_arrays()


@pytest.fixture(scope="module")
def trained(digits):
    """resnet20 (0.27M parameters) trained a few epochs on digits: about 90% top-1."""
    keras.utils.set_random_seed(0)
    model = rk.build_model("resnet20", classes=digits.num_classes)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy")
    model.fit(digits.train(64), epochs=3, verbose=0)
    return model


@pytest.fixture(scope="module")
def reference(trained, test_split):
    return trained.predict(test_split[0].astype(np.float32), batch_size=128, verbose=0)


@pytest.fixture(scope="module")
def calibration(digits):
    return digits.calibration_images(CALIBRATION_SIZE)


@pytest.fixture(scope="module")
def qat_model(trained, digits, calibration):
    model = qat.quantize_model(trained, calibration_images=calibration)
    model.compile(keras.optimizers.SGD(1e-3, momentum=0.9), "sparse_categorical_crossentropy")
    model.fit(digits.train(64), epochs=1, steps_per_epoch=5, verbose=0)
    return model


@pytest.fixture(scope="module")
def exported(trained, qat_model, calibration, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("export")
    return tflite.export_variants(trained, out_dir=out_dir, qat_model=qat_model,
                                  calibration_images=calibration)


def test_export_variants_writes_one_named_file_per_variant(exported):
    assert list(exported) == list(tflite.VARIANTS)
    for variant, path in exported.items():
        assert os.path.basename(path) == f"resnet20_{variant}.tflite"
        assert evaluate.load_interpreter(path).get_input_details()[0]["shape"].tolist() == [
            1, 32, 32, 3]


def test_metadata_leaves_every_variant_unchanged_in_litert(exported, test_split, tmp_path):
    images = test_split[0][:16]
    for variant, path in exported.items():
        copy = tmp_path / os.path.basename(path)
        copy.write_bytes(open(path, "rb").read())
        metadata.write(copy, labels=[str(i) for i in range(10)], version="test")
        assert metadata.read_metadata(copy)["labels"][9] == "9", variant
        np.testing.assert_array_equal(evaluate.predict_tflite(str(copy), images),
                                      evaluate.predict_tflite(path, images), err_msg=variant)


def test_float32_matches_keras(exported, test_split, reference):
    images, labels = test_split
    result = evaluate.evaluate_tflite(exported["float32"], images, labels,
                                      reference_predictions=reference)
    print(f"float32 vs Keras: max |diff| {result['max_abs_diff']:.2e}, "
          f"agreement {result['agreement']:.4f}")
    assert result["max_abs_diff"] < 1e-4
    assert result["agreement"] >= 0.997
    assert result["top1"] == pytest.approx(np.mean(reference.argmax(-1) == labels))


def test_quantized_files_are_smaller(exported):
    size = {v: os.path.getsize(p) for v, p in exported.items()}
    print({v: f"{s / 1e6:.3f} MB" for v, s in size.items()})
    for variant in ("dynamic", "int8", "int8_qat"):
        assert size[variant] < 0.3 * size["float32"], variant
    assert 0.4 * size["float32"] < size["fp16"] < 0.6 * size["float32"]


def test_every_variant_runs_close_to_keras(exported, test_split, reference):
    images, labels = test_split
    keras_top1 = float(np.mean(reference.argmax(-1) == labels))
    assert keras_top1 > 0.8  # trained enough for accuracy to mean something
    start = time.perf_counter()
    for variant, path in exported.items():
        result = evaluate.evaluate_tflite(path, images, labels, reference_predictions=reference)
        print(variant, result)
        assert result["top1"] >= keras_top1 - 0.05, variant
        assert result["top5"] is not None and result["top5"] >= result["top1"]
        assert result["agreement"] >= 0.9, variant
    # The 360-image split for every variant: batch-1 invokes are fast enough.
    assert time.perf_counter() - start < 60


@pytest.mark.parametrize("variant", ["int8", "int8_qat"])
def test_integer_input_and_output_types(variant, exported, trained, qat_model, calibration,
                                        test_split, reference, tmp_path):
    source = qat_model if variant == "int8_qat" else trained
    path = tmp_path / "int8_io.tflite"
    path.write_bytes(tflite.convert(source, variant, calibration_images=calibration,
                                    io_dtype="int8"))
    for file, dtype in ((exported[variant], np.uint8), (path, np.int8)):
        interpreter = evaluate.load_interpreter(file)
        inputs, outputs = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        assert inputs["dtype"] == dtype and outputs["dtype"] == dtype
        if variant == "int8_qat":  # pixels map exactly onto the integer input
            assert inputs["quantization"] == (1.0, 0 if dtype == np.uint8 else -128)
    images, labels = test_split
    uint8_scores = evaluate.predict_tflite(exported[variant], images[:100])
    int8_scores = evaluate.predict_tflite(path, images[:100])
    assert np.mean(uint8_scores.argmax(-1) == int8_scores.argmax(-1)) >= 0.97


def test_measure_latency_times_every_file(exported):
    files = {"int8": exported["int8"], "float32": exported["float32"]}
    latency = evaluate.measure_latency(files, num_threads=1, runs=7, warmup=1, rounds=3)
    assert list(latency) == ["int8", "float32"]
    for stats in latency.values():
        assert set(stats) == {"median_ms", "min_ms", "max_ms"}
        assert 0 < stats["min_ms"] <= stats["median_ms"] <= stats["max_ms"]


def test_caffe_reordering_is_folded_into_conv1(tmp_path):
    model = rk.build_model("resnet18", input_shape=(32, 32, 3), classes=3)
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    for variant in ("float32", "int8"):
        path = tmp_path / f"{variant}.tflite"
        path.write_bytes(tflite.convert(model, variant, calibration_images=images))
        ops = {op.name for op in tflite_file.read(path).ops}
        assert not ops & {"STRIDED_SLICE", "CONCATENATION"}, ops
    scores = evaluate.predict_tflite(tmp_path / "float32.tflite", images)
    np.testing.assert_allclose(scores, model.predict(images, verbose=0), atol=1e-5)


def test_xnnpack_placement_finds_ops_left_out(tmp_path):
    # XNNPACK has no 1x1 pooling with stride 2: the pool splits the graph in two partitions.
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.MaxPooling2D(1, strides=2)(x)
    x = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    path = tmp_path / "pool.tflite"
    path.write_bytes(tflite.convert(keras.Model(inputs, x), "float32"))
    placement = evaluate.xnnpack_placement(path)
    assert placement["not_delegated"] == {"MAX_POOL_2D": 1}
    assert placement["partitions"] == 2
    assert placement["delegated"] == placement["ops"] - 1


# resnet20's option-A shortcuts are 1x1 stride-2 CONV_2D ops, which XNNPACK takes: one
# partition. Integer files keep their uint8<->int8 QUANTIZE ends and the int8 SOFTMAX
# outside it (a 1x1 stride-2 MAX_POOL_2D, the shortcut before, would cut it in three).
_RESNET20_LEFT_OUT = {"float32": {}, "fp16": {}, "dynamic": {},
                      "int8": {"QUANTIZE": 2, "SOFTMAX": 1},
                      "int8_qat": {"QUANTIZE": 2, "SOFTMAX": 1}}


@pytest.mark.parametrize("variant", tflite.VARIANTS)
def test_xnnpack_placement_of_resnet20_files(exported, variant):
    placement = evaluate.xnnpack_placement(exported[variant])
    assert placement["not_delegated"] == _RESNET20_LEFT_OUT[variant]
    assert placement["partitions"] == 1
    assert placement["ops"] == len(tflite_file.read(exported[variant]).ops)
    if variant == "int8":
        assert evaluate.xnnpack_placement(evaluate.load_interpreter(exported[variant])) == \
            placement


@pytest.mark.parametrize("name, kwargs", [
    ("resnet20", {"shortcut": "B"}),  # projection shortcuts: no pooling to leave out
    ("resnet18", {}),  # ImageNet stem: its 3x3 MAX_POOL_2D is one XNNPACK takes
])
def test_xnnpack_takes_a_float32_projection_net_in_one_partition(name, kwargs, tmp_path):
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(tflite.convert(
        rk.build_model(name, input_shape=(32, 32, 3), classes=3, **kwargs), "float32"))
    placement = evaluate.xnnpack_placement(path)
    assert placement["partitions"] == 1 and placement["not_delegated"] == {}
    assert placement["delegated"] == len(tflite_file.read(path).ops)


def test_predict_checks_image_shape(exported):
    with pytest.raises(ValueError, match=r"\(N, 32, 32, 3\).*\(2, 16, 16, 3\)"):
        evaluate.predict_tflite(exported["float32"], np.zeros((2, 16, 16, 3), np.uint8))


def test_bad_files_get_clear_errors(exported, tmp_path):
    data = open(exported["int8"], "rb").read()
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match="truncated.tflite is not a valid TFLite model"):
        evaluate.load_interpreter(truncated)
    text = tmp_path / "notes.tflite"
    text.write_text("this is a text file, not a model\n")
    with pytest.raises(ValueError, match="notes.tflite is not a TFLite model.*TFL3"):
        evaluate.load_interpreter(text)
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="not a TFLite model"):
        evaluate.predict_tflite(empty, np.zeros((1, 32, 32, 3), np.uint8))
    with pytest.raises(FileNotFoundError, match="missing.tflite does not exist"):
        evaluate.load_interpreter(tmp_path / "missing.tflite")


@pytest.fixture(scope="module")
def tiny():
    return rk.build_model("resnet20", input_shape=(8, 8, 3), classes=3)


@pytest.mark.parametrize("images, message", [
    pytest.param(None, r"needs calibration_images.*\(N, 8, 8, 3\)", id="missing"),
    pytest.param(np.zeros((0, 8, 8, 3)), r"empty.*\(N, 8, 8, 3\)", id="empty"),
    pytest.param(np.zeros((4, 16, 16, 3)), r"\(N, 8, 8, 3\); got \(4, 16, 16, 3\)",
                 id="wrong-shape"),
    pytest.param(np.zeros((8, 8, 3)), r"\(N, 8, 8, 3\); got rank 3", id="wrong-rank"),
    pytest.param(np.full((2, 8, 8, 3), np.nan), "NaN", id="nan"),
])
def test_bad_calibration_images(tiny, images, message):
    with pytest.raises(ValueError, match=message):
        tflite.convert(tiny, "int8", calibration_images=images)


def test_closed_sets_and_model_kinds(tiny, tmp_path):
    with pytest.raises(ValueError, match="Unknown variant 'int4'; valid: float32, fp16, "
                                         "dynamic, int8, int8_qat"):
        tflite.convert(tiny, "int4")
    with pytest.raises(ValueError, match="Unknown io_dtype 'uint16'; valid: uint8, int8"):
        tflite.convert(tiny, "int8", io_dtype="uint16")
    with pytest.raises(ValueError, match="int8_qat needs the QAT model"):
        tflite.convert(tiny, "int8_qat")
    with pytest.raises(ValueError, match="QAT model, which converts as int8_qat"):
        tflite.convert(qat.quantize_model(tiny, calibration_images=np.zeros((1, 8, 8, 3))),
                       "float32")
    # export_variants checks everything before writing anything.
    for kwargs, message in (({"variants": ["float32", "int4"]}, "Unknown variant"),
                            ({"variants": ["float32", "int8_qat"]}, "needs qat_model"),
                            ({"variants": ["float32", "int8"]}, "needs calibration_images")):
        with pytest.raises(ValueError, match=message):
            tflite.export_variants(tiny, out_dir=tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_export_variants_prints_one_line_per_variant(tiny, tmp_path, capsys):
    paths = tflite.export_variants(tiny, out_dir=tmp_path, variants=["float32", "fp16"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["float32", "fp16"]
    for line, path in zip(lines, paths.values()):
        assert " s " in line and " MB " in line and line.endswith(path)


def _cli(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "export", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def test_cli_end_to_end(trained, tmp_path):
    model_path = tmp_path / "resnet20.keras"
    trained.save(model_path)
    out = tmp_path / "out"
    result = _cli("--model", model_path, "--variants", "float32,int8", "--dataset", "digits",
                  "--out", out, "--calibration-size", 64)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(result.stdout)
    assert "float32 vs Keras" in result.stdout and ": OK" in result.stdout
    assert sorted(os.listdir(out)) == ["export.json", "resnet20_float32.tflite",
                                       "resnet20_int8.tflite"]
    for name in ("resnet20_float32.tflite", "resnet20_int8.tflite"):
        assert metadata.read_metadata(out / name)["labels"] == [str(i) for i in range(10)]
    report = json.loads((out / "export.json").read_text())
    assert [row["variant"] for row in report["variants"]] == ["float32", "int8"]
    assert report["variants"][0]["agreement"] >= 0.997
    assert report["num_test"] == 360


@pytest.mark.slow
def test_cli_with_qat_model_and_int8_io(trained, qat_model, tmp_path):
    trained.save(tmp_path / "resnet20.keras")
    qat_model.save(tmp_path / "qat.keras")
    result = _cli("--model", tmp_path / "resnet20.keras", "--qat-model", tmp_path / "qat.keras",
                  "--dataset", "digits", "--io-dtype", "int8", "--calibration-size", 64)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "export.json").read_text())
    assert [row["variant"] for row in report["variants"]] == list(tflite.VARIANTS)


def test_cli_errors_exit_2_with_one_line(tmp_path):
    result = _cli("--model", tmp_path / "missing.keras", "--dataset", "digits")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: --model {tmp_path / 'missing.keras'} does not exist."
    model_path = tmp_path / "tiny.keras"
    rk.build_model("resnet20", input_shape=(8, 8, 3), classes=3).save(model_path)
    result = _cli("--model", model_path, "--dataset", "digits", "--variants", "float32,int4")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "int4" in errors[0] and "valid: float32" in errors[0]
