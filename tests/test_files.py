"""Tests for rundir/files.py: the run directory's file names and the atomic writer."""

import json
import os

import pytest

from rundir import RunDir, replacing
from rundir.files import write_json


def test_run_dir_names_every_file_once(tmp_path):
    run = RunDir(tmp_path / "r")
    paths = [run.lock, run.config, run.state, run.timing, run.history, run.training_curve,
             run.last_model, run.best_model, run.backup, run.logs, run.train_result,
             run.head_model, run.qat_model, run.qat_result, run.export_dir, run.manifest,
             run.report_json,
             run.report_markdown, run.report_chart, run.android_dir]
    assert len(set(paths)) == len(paths)
    assert all(p.startswith(str(tmp_path / "r")) for p in paths)
    with pytest.raises(FileNotFoundError, match=r"has no QAT model \(qat.keras\). Run the qat "
                                                r"stage first: python train.py --stages qat"):
        run.require(run.qat_model, what="QAT model", stage="qat")
    run.write_json(run.manifest, {"int8": "m_int8.tflite"})
    assert run.read_json(run.manifest) == {"int8": "m_int8.tflite"}
    assert os.listdir(run.export_dir) == ["manifest.json"]  # no temporary file left


def test_replacing_writes_whole_or_not_at_all(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text("old")
    with replacing(path) as partial:
        assert partial == str(tmp_path / ".partial-manifest.json")
        with open(partial, "w") as f:
            f.write("new")
        assert path.read_text() == "old"
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["manifest.json"]
    with pytest.raises(OSError, match=f"Could not write {path}: .*; the previous "
                                      f"manifest.json is unchanged"):
        with replacing(path) as partial:
            with open(partial, "w") as f:
                f.write("half")
            raise OSError(28, "No space left on device")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["manifest.json"]


def test_replacing_removes_its_temporary_file_whatever_the_writer_raises(tmp_path):
    path = tmp_path / "result.json"
    write_json(path, {"kept": 1})
    with pytest.raises(TypeError):
        write_json(path, {"not json": object()})
    with pytest.raises(ValueError, match="not a model"):
        with replacing(path) as partial:
            open(partial, "w").write("half")
            raise ValueError("not a model")
    assert os.listdir(tmp_path) == ["result.json"]
    assert json.loads(path.read_text()) == {"kept": 1}
