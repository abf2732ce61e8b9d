"""Tests for quantization/finetune.py: the qat stage on a run directory with a float model.

A saved resnet20 (`last.keras`) fine-tuned quantization-aware for one epoch on
a slice of digits (128 training, 64 test images); what is checked is what the
stage writes.
"""

import numpy as np
import pytest

import resnet_keras as rk
from datasets import digits as digits_source
from datasets.input_pipeline import Dataset
from job import config as config_lib
from quantization import qat
from quantization.finetune import fine_tune
from rundir import RunDir, model_files
from rundir.model_files import load_qat_model


@pytest.fixture(scope="module")
def tiny_digits():
    """The first 128 training and 64 test images of digits, as a `Dataset`."""
    parts = digits_source.load("digits", data_dir=None, image_size=None, augmentation="auto")
    parts["train"] = parts["train"].subset(np.arange(128))
    parts["test"] = parts["test"].subset(np.arange(64))
    return Dataset(name="digits", **parts)


@pytest.fixture
def run(tmp_path, tiny_digits):
    run = RunDir(tmp_path / "run")
    run.create()
    model = rk.build_model("resnet20", classes=tiny_digits.num_classes,
                           input_shape=tiny_digits.image_shape)
    model_files.save_model(model, run.last_model)
    return run


def test_fine_tune_writes_the_qat_model_and_its_result(run, tiny_digits):
    config = config_lib.resolve(overrides={"qat.epochs": "1", "qat.batch_size": "64"})
    float_before = open(run.last_model, "rb").read()
    result = fine_tune(run, tiny_digits, qat_cfg=config.qat, train_cfg=config.train,
                       calibration=tiny_digits.calibration_images(16), augment=False)
    assert run.read_json(run.qat_result) == result
    assert sorted(result) == ["epochs", "seconds", "test_top1", "test_top5"]
    assert result["epochs"] == 1 and result["test_top5"] is not None
    assert 0.0 <= result["test_top1"] <= result["test_top5"] <= 1.0
    assert open(run.last_model, "rb").read() == float_before  # the float model untouched

    model = load_qat_model(run, scope=qat.quantize_scope)
    assert any(layer.name.startswith("quant_") for layer in model.layers)
    # One epoch of the plan: 128 / 64 = 2 steps.
    assert int(model.optimizer.iterations.numpy()) == 2
    images, labels = tiny_digits.test_arrays()
    predictions = model.predict(images.astype("float32"), verbose=0)
    assert np.mean(predictions.argmax(-1) == labels) == pytest.approx(result["test_top1"],
                                                                      abs=1e-6)


def test_fine_tune_needs_the_trained_model(tmp_path, tiny_digits):
    run = RunDir(tmp_path / "empty")
    run.create()
    config = config_lib.resolve()
    with pytest.raises(FileNotFoundError, match=r"has no trained model \(last.keras\). Run the "
                                                r"train stage first"):
        fine_tune(run, tiny_digits, qat_cfg=config.qat, train_cfg=config.train, calibration=None)
