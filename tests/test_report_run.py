"""Tests for report/run.py: what the report stage refuses before it measures anything.

The whole stage, end to end, is tested through train.py in tests/test_stages.py.
"""

import pytest

import resnet_keras as rk
from export import tflite
from job import config as config_lib
from report.run import report_run
from rundir import RunDir, model_files


def test_an_export_of_another_model_is_named_with_both_shapes(tmp_path, digits):
    run = RunDir(tmp_path / "run")
    run.create()
    model_files.save_model(rk.build_model("resnet20", classes=10), run.last_model)
    other = rk.build_model("resnet20", classes=5)  # e.g. left by an earlier run of 5 classes
    path = run.exported_file("resnet20_float32.tflite")
    run.write_json(run.manifest, {"float32": "resnet20_float32.tflite"})
    with open(path, "wb") as f:
        f.write(tflite.convert(other, "float32"))
    with pytest.raises(ValueError) as error:
        report_run(run, digits, model_name="resnet20", report_cfg=config_lib.Config().report,
                   calibration=None)
    assert str(error.value) == (
        f"{path} takes (32, 32, 3) images and gives 5 scores, but the run's model takes "
        f"(32, 32, 3) and gives 10: it is not an export of this run. Export again: python "
        f"train.py --stages export --run-dir {run.root}")
    assert not (tmp_path / "run" / "report.json").exists()
