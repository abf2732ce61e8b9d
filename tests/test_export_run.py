"""Tests for export/run.py and `python -m export`: one export function, two front ends."""

import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest

import export.__main__ as export_cli
import resnet_keras as rk
from export import metadata, tflite
from export.run import calibration_set, export_models, export_run, load_manifest
from quantization import qat
from resnet_keras.backend import keras
from rundir import RunDir, model_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def qat_model(trained, digits):
    model = qat.quantize_model(trained, calibration_images=digits.calibration_images(128))
    model.compile(keras.optimizers.SGD(1e-3, momentum=0.9), "sparse_categorical_crossentropy")
    model.fit(digits.train(64), epochs=1, steps_per_epoch=5, verbose=0)
    return model


@pytest.fixture(scope="module")
def tiny():
    return rk.build_model("resnet20", input_shape=(8, 8, 3), classes=3)


def test_calibration_set_draws_distinct_training_images(digits):
    images = calibration_set(digits, size=16, seed=3)
    assert images.shape == (16, *digits.image_shape) and images.dtype == np.float32
    np.testing.assert_array_equal(images, calibration_set(digits, size=16, seed=3))
    assert not np.array_equal(images, calibration_set(digits, size=16, seed=4))
    # More than the training split holds: all of it.
    assert len(calibration_set(digits, size=10**6)) == digits.num_train


def test_export_models_writes_each_variant_with_its_metadata(tiny, tmp_path):
    images = np.random.default_rng(0).uniform(0, 255, (4, 8, 8, 3)).astype(np.float32)
    paths = export_models(tiny, out_dir=tmp_path / "out", variants=["int8", "float32"],
                          calibration=images, io_dtype="int8", labels=["a", "b", "c"],
                          version="run-1")
    assert list(paths) == ["int8", "float32"]
    for variant, path in paths.items():
        assert os.path.basename(path) == f"resnet20_{variant}.tflite"
        info = metadata.read_metadata(path)
        assert info["labels"] == ["a", "b", "c"] and info["version"] == "run-1", variant
    with pytest.raises(ValueError, match="needs calibration_images"):
        export_models(tiny, out_dir=tmp_path / "bad", variants=["int8"], calibration=None,
                      io_dtype="uint8", labels=["a", "b", "c"], version="run-1")
    assert not (tmp_path / "bad").exists()


def test_export_run_writes_the_run_manifest(tiny, tmp_path):
    run = RunDir(tmp_path / "run-7")
    run.create()
    model_files.save_model(tiny, run.last_model)
    export_cfg = types.SimpleNamespace(variants=["float32", "fp16"], io_dtype="uint8")
    dataset = types.SimpleNamespace(class_names=("x", "y", "z"))
    paths = export_run(run, dataset, export_cfg=export_cfg, calibration=None)
    assert load_manifest(run) == paths
    assert run.read_json(run.manifest) == {"float32": "resnet20_float32.tflite",
                                           "fp16": "resnet20_fp16.tflite"}
    assert metadata.read_metadata(paths["fp16"])["version"] == "run-7"
    assert not any(name.startswith(".partial") for name in os.listdir(run.export_dir))


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
    # The export stage's one line per file, then the table.
    lines = result.stdout.splitlines()
    for variant in ("float32", "int8"):
        path = str(out / f"resnet20_{variant}.tflite")
        assert any(line.startswith(variant) and " MB " in line and line.endswith(path)
                   for line in lines), result.stdout
    assert any(line.startswith("variant") and "size MB" in line for line in lines)
    assert sorted(os.listdir(out)) == ["export.json", "resnet20_float32.tflite",
                                       "resnet20_int8.tflite"]
    for name in ("resnet20_float32.tflite", "resnet20_int8.tflite"):
        assert metadata.read_metadata(out / name)["labels"] == [str(i) for i in range(10)]
    assert metadata.read_metadata(out / "resnet20_int8.tflite")["version"] == (
        f"{tmp_path.name}/resnet20.keras")
    report = json.loads((out / "export.json").read_text())
    assert [row["variant"] for row in report["variants"]] == ["float32", "int8"]
    assert report["variants"][0]["agreement"] >= 0.997
    assert report["num_test"] == 360
    assert set(report) == {"model", "dataset", "num_test", "keras_top1", "io_dtype",
                           "variants"}
    assert set(report["variants"][1]) == {"variant", "file", "size_bytes", "top1", "top5",
                                          "agreement", "max_abs_diff"}
    assert (report["model"], report["dataset"], report["io_dtype"]) == (
        "resnet20", "digits", "uint8")


def test_cli_exits_1_when_float32_does_not_reproduce_keras(trained, tmp_path, monkeypatch,
                                                           capsys):
    trained.save(tmp_path / "resnet20.keras")
    # No file can agree on more than every image.
    monkeypatch.setattr(export_cli, "FLOAT32_MIN_AGREEMENT", 1.01)
    status = export_cli.main(["--model", str(tmp_path / "resnet20.keras"), "--variants",
                              "float32", "--dataset", "digits"])
    assert status == 1
    assert ": FAILED" in capsys.readouterr().out
    assert json.loads((tmp_path / "export.json").read_text())["variants"][0]["variant"] == \
        "float32"


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
    result = _cli("--model", model_path, "--dataset", "digits", "--io-dtype", "uint16")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: Unknown io_dtype 'uint16'; valid: uint8, int8."
