"""Tests for train.py's command line: its help, one clear line for bad input, resume checks.

What its stages do is tested per module: tests/test_loop.py (train),
tests/test_stages.py (the runner and all stages), tests/test_config.py.
"""

import json
import os
import subprocess
import sys

import pytest

from job import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A few quick steps: enough to exercise the mechanism, not to learn.
QUICK = ["--train.epochs", "2", "--train.steps_per_epoch", "4", "--train.batch_size", "16"]


def run_train(args, *, timeout=300):
    return subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def test_help_lists_every_key_with_default():
    result = run_train(["--help"], timeout=60)
    assert result.returncode == 0
    for key in ("--train.epochs", "--model.name", "--qat.learning_rate", "--export.variants"):
        assert key in result.stdout
    assert "default: resnet20" in result.stdout
    assert "--train.label_smoothing V\n                        default: 0.0; valid: >= 0 and < 1" \
        in result.stdout


def test_a_value_out_of_range_stops_before_anything_runs(tmp_path):
    # Before: -1 steps trained forever, an export key failed only after training.
    for args, line in ((["--train.steps_per_epoch", "-1"],
                        "error: train.steps_per_epoch must be >= 1, got -1."),
                       (["--export.calibration_size", "0"],
                        "error: export.calibration_size must be >= 1, got 0.")):
        result = run_train(["--run-dir", str(tmp_path / "r"), *args], timeout=60)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines()[-1] == line
        assert "Traceback" not in result.stderr
        assert not (tmp_path / "r").exists()


# ---- bad input ----

@pytest.mark.parametrize("args, match", [
    (["--data.dataset", "mnist"], "mnist"),
    (["--model.name", "resnet21"], "Unknown model name 'resnet21'"),
    (["--preset", "cifar11"], "Valid presets"),
    (["--train.batch_size", "5000"], "larger than the training set"),
    (["--data.dataset", "folder", "--data.data_dir", "/nonexistent/imagenet"],
     "/nonexistent/imagenet"),
])
def test_bad_input_gets_one_clear_line(tmp_path, args, match):
    result = run_train(["--stages", "train", "--run-dir", str(tmp_path / "r"), *QUICK, *args],
                       timeout=120)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert match in result.stderr
    assert "Traceback" not in result.stderr


def test_empty_data_dir_and_resume_of_another_model(tmp_path):
    (tmp_path / "data" / "train").mkdir(parents=True)
    result = run_train(["--stages", "train", "--run-dir", str(tmp_path / "r"), *QUICK,
                        "--data.dataset", "folder", "--data.data_dir", str(tmp_path / "data")],
                       timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(tmp_path / "data") in result.stderr

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(config_lib.to_dict(config_lib.resolve())))
    result = run_train(["--resume", str(run_dir), "--model.name", "resnet56"], timeout=120)
    assert result.returncode == 2
    assert "holds a run of model.name='resnet20', not 'resnet56'" in result.stderr
    result = run_train(["--resume", str(tmp_path / "nothing")], timeout=120)
    assert result.returncode == 2 and "not a run directory" in result.stderr


def test_the_same_preset_again_is_the_same_run_another_is_refused(tmp_path):
    import train as train_cli

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    command = ["--preset", "digits", "--run-dir", str(run_dir), "--train.epochs", "2"]
    config, _ = train_cli.resolve_run(*train_cli.parse_args(command))
    # As a multi-worker job's later worker finds it: its chief has written config.json.
    (run_dir / "config.json").write_text(json.dumps(config_lib.to_dict(config)))
    assert train_cli.resolve_run(*train_cli.parse_args(command))[0] == config
    with pytest.raises(ValueError, match="is an existing run; --preset and --config apply only"):
        train_cli.resolve_run(*train_cli.parse_args([*command[:-1], "3"]))
