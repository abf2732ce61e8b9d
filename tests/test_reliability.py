"""Reliability of train.py and `python -m export`, one section per promise.

No code runs from a model file; resume is exact at epoch boundaries; divergence
never leaves bad weights; one process per run directory; every OS or input
error is one line naming the file or key. Kills at a chosen point run train.py
through tests/kill_at.py, which patches the point in: production code has no test hook.
"""

import csv
import errno
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import train as train_cli
from job import config as config_lib
from job import stages
from rundir import RunDir, model_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = ["--train.epochs", "3", "--train.steps_per_epoch", "4", "--train.batch_size", "16",
         "--train.save_every_steps", "2"]


def run_command(args, *, env=None, timeout=300):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**os.environ, **(env or {})})


def run_train(args, **kwargs):
    return run_command([os.path.join(ROOT, "train.py"), *args], **kwargs)


def run_train_killed_at(point, args):
    """train.py `args`, killed with SIGKILL at `point` ("<point>@<n>", see tests/kill_at.py)."""
    killed = run_command([os.path.join(ROOT, "tests", "kill_at.py"), point, *args])
    assert killed.returncode == -9, killed.stderr[-2000:]
    return killed


def error_line(stderr):
    """The `error: ...` line of a command's stderr (TensorFlow logs its own lines too)."""
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


def _error_line(capsys, argv):
    """`python train.py argv` in this process: (exit status, its one stderr line)."""
    status = train_cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) <= 1, err
    return status, err


def history_rows(run_dir):
    with open(os.path.join(run_dir, "history.csv")) as f:
        return list(csv.DictReader(f))


def history_epochs(run_dir):
    return [int(row["epoch"]) for row in history_rows(run_dir)]


def kept_epoch(path, steps_per_epoch):
    """The 0-based epoch a saved model was trained to, from its optimizer's step count."""
    iterations = int(model_files.load_model(path).optimizer.iterations.numpy())
    assert iterations % steps_per_epoch == 0, iterations
    return iterations // steps_per_epoch - 1


def best_epoch(rows):
    """The epoch `best.keras` must hold: the first with the highest val_accuracy."""
    accuracies = [float(row["val_accuracy"]) for row in rows]
    return int(rows[accuracies.index(max(accuracies))]["epoch"])


# ---- 1. no code runs from a model file ----

@pytest.fixture(scope="module")
def lambda_files(tmp_path_factory):
    """An HDF5 and a .keras model whose Lambda touches `marker` when it runs."""
    from resnet_keras.backend import keras

    folder = tmp_path_factory.mktemp("lambda")
    marker = folder / "marker"
    touch = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]")
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Lambda(touch)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    model.save(folder / "lambda.h5")
    model.save(folder / "lambda.keras")
    marker.unlink()
    return folder / "lambda.h5", folder / "lambda.keras", marker


def test_no_loader_runs_a_lambda(lambda_files):
    h5, dot_keras, marker = lambda_files
    with pytest.raises(ValueError, match="is an HDF5 model file.*--allow-unsafe-model-files"):
        model_files.load_model(h5)
    with pytest.raises(ValueError, match="holds a Lambda layer"):
        model_files.load_model(dot_keras)
    from quantization.qat import load_qat_model
    with pytest.raises(ValueError, match="holds a Lambda layer"):
        load_qat_model(dot_keras)
    assert not marker.exists()
    model_files.load_model(h5, allow_unsafe=True)  # the explicit opt-in
    assert marker.exists()
    marker.unlink()


def test_export_cli_and_run_directory_refuse_hdf5(lambda_files, tmp_path):
    h5, _, marker = lambda_files
    result = run_command(["-m", "export", "--model", str(h5), "--dataset", "digits"])
    assert result.returncode == 2
    assert error_line(result.stderr).startswith(f"error: {h5} is an HDF5 model file")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(config_lib.to_dict(config_lib.resolve())))
    (run_dir / "last.keras").write_bytes(h5.read_bytes())
    result = run_train(["--stages", "export", "--run-dir", str(run_dir),
                        "--export.variants", "float32"])
    assert result.returncode == 2, result.stderr[-2000:]
    assert error_line(result.stderr).startswith(
        f"error: {run_dir / 'last.keras'} is an HDF5 model file")
    assert not marker.exists()


def test_model_files_that_are_not_keras_models(tmp_path):
    from resnet_keras.backend import keras

    tflite = tmp_path / "x.tflite"
    tflite.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    result = run_command(["-m", "export", "--model", str(tflite), "--dataset", "digits"])
    assert result.returncode == 2
    assert error_line(result.stderr) == (
        f"error: {tflite} is a TFLite file; this takes the Keras model (.keras) it was "
        f"converted from. A .tflite is already an export: measure it with "
        f"export.runtime.evaluate_tflite, or give the run's last.keras.")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model_files.save_model(model, tmp_path / "m.keras")
    data = (tmp_path / "m.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match="cut.keras is not a whole .keras model file .not a zip"):
        model_files.load_model(tmp_path / "cut.keras")


# ---- 2. resume is exact at epoch boundaries ----

def test_best_so_far_comes_from_the_history(tmp_path):
    from training.history import best_before

    history = tmp_path / "history.csv"
    history.write_text("epoch,accuracy,val_accuracy\n0,0.5,0.6\n1,0.6,0.9\n2,0.7,0.8\n")
    assert best_before(str(history), 3) == 0.9
    assert best_before(str(history), 1) == 0.6
    assert best_before(str(history), 0) == -1.0
    assert best_before(str(tmp_path / "none.csv"), 5) == -1.0


def test_a_resume_skips_finished_stages_even_with_stages(tmp_path, monkeypatch):
    calls = []
    for stage in config_lib.STAGES:
        monkeypatch.setitem(stages.STAGE_FUNCTIONS, stage,
                            lambda job, stage=stage: calls.append(stage) or {})
    run_dir = str(tmp_path / "run")
    assert train_cli.main(["--stages", "train", "--run-dir", run_dir]) == 0
    assert train_cli.main(["--resume", run_dir, "--stages", "train"]) == 0
    assert calls == ["train"]


@pytest.mark.slow
@pytest.mark.parametrize("point, val_split, left", [
    # Killed after epoch 1's row, before its last.keras and backup.
    ("after_history_row@2", "0", ([0, 1], [])),
    # Killed in epoch 1's validation, before its row.
    ("during_evaluation@2", "0", ([0], [])),
    # Killed writing epoch 1's last.keras (best.keras is copied, not saved): the old one stays.
    ("during_save@2", "0.1", ([0, 1], [".partial-last.keras"])),
], ids=["after_history_row", "during_evaluation", "during_save"])
def test_a_kill_at_an_epoch_boundary_resumes_exactly(tmp_path, point, val_split, left):
    run_dir = tmp_path / "run"
    args = ["--stages", "train", "--run-dir", str(run_dir), *QUICK, "--data.val_split", val_split]
    run_train_killed_at(point, args)
    epochs, partial = left
    assert history_epochs(run_dir) == epochs  # killed where the point says
    assert [f for f in os.listdir(run_dir) if f.startswith(".partial")] == partial
    assert kept_epoch(run_dir / "last.keras", 4) == 0
    result = run_train(["--resume", str(run_dir)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert not [f for f in os.listdir(run_dir) if f.startswith(".partial")]
    assert history_epochs(run_dir) == [0, 1, 2]
    assert kept_epoch(run_dir / "last.keras", 4) == 2  # 3 epochs x 4 steps, none twice
    if float(val_split):
        # best.keras is the copy of last.keras at the logged epoch of the best val_accuracy.
        assert kept_epoch(run_dir / "best.keras", 4) == best_epoch(history_rows(run_dir))
    # Done is done: the train stage is not run again, no row is added.
    again = run_train(["--resume", str(run_dir), "--stages", "train"])
    assert again.returncode == 0 and "[train] already done in this run, skipped" in again.stdout
    assert history_epochs(run_dir) == [0, 1, 2]


@pytest.mark.slow
def test_best_model_survives_a_restart(tmp_path):
    run_dir = tmp_path / "run"
    args = ["--stages", "train", "--run-dir", str(run_dir), *QUICK, "--data.val_split", "0.1"]
    run_train_killed_at("during_evaluation@3", args)  # in epoch 2's validation
    rows = history_rows(run_dir)
    assert [int(row["epoch"]) for row in rows] == [0, 1]
    best = best_epoch(rows)
    assert kept_epoch(run_dir / "best.keras", 4) == best
    # The best epoch's row made unbeatable (top-1 is at most 1, and only a higher one
    # replaces best.keras): a restart that forgot the best so far would replace it.
    rows[best]["val_accuracy"] = "1.0"
    with open(run_dir / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    before = (run_dir / "best.keras").read_bytes()
    result = run_train(["--resume", str(run_dir)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert history_epochs(run_dir) == [0, 1, 2]
    assert kept_epoch(run_dir / "last.keras", 4) == 2
    assert (run_dir / "best.keras").read_bytes() == before


# ---- 3. divergence never leaves bad weights ----

def test_no_file_is_written_with_a_non_finite_value(tmp_path):
    from resnet_keras.backend import keras
    from training.callbacks import NaNGuard

    model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization(name="bn")])
    model_files.save_model(model, tmp_path / "good.keras")
    model.get_layer("bn").moving_variance.assign([np.inf, 1, 1, 1])
    with pytest.raises(model_files.NonFiniteWeights, match="bn/moving_variance"):
        model_files.save_model(model, tmp_path / "good.keras")
    assert model_files.load_model(tmp_path / "good.keras").get_layer("bn").moving_variance[0] == 1
    model.save(tmp_path / "bad.keras")  # behind the helper's back
    with pytest.raises(ValueError, match="bad.keras holds NaN or inf in 1 variable"):
        model_files.load_model(tmp_path / "bad.keras")
    guard = NaNGuard()
    guard.set_model(model)
    assert not guard.weights_finite(batch=3)
    assert guard.diverged_at == (1, 4) and "bn/moving_variance" in guard.reason
    assert model.stop_training


@pytest.mark.slow
def test_a_diverged_run_keeps_only_finite_checkpoints(tmp_path):
    import tensorflow as tf

    run_dir = tmp_path / "run"
    args = ["--stages", "train", "--run-dir", str(run_dir), *QUICK, "--train.save_every_steps",
            "1"]
    assert run_train([*args, "--train.epochs", "1"]).returncode == 0
    # The same run continued at a rate that diverges: the 1e6, and 100 with warmup,
    # whose loss stayed finite (about 1e27) while weights overflowed.
    for rate in (["1e6"], ["100", "--train.warmup_epochs", "4"]):
        result = run_train([*args, "--train.learning_rate", *rate])
        assert result.returncode == 2, result.stderr[-2000:]
        assert error_line(result.stderr).startswith("error: Training diverged at epoch 2")
        assert f"The last good weights are in {run_dir / 'last.keras'} and" in result.stderr
    reader = tf.train.load_checkpoint(str(run_dir / "backup" / "chief"))
    for name, dtype in reader.get_variable_to_dtype_map().items():
        if dtype.is_floating:
            assert np.isfinite(reader.get_tensor(name)).all(), name
    if (run_dir / "last.keras").exists():
        model_files.load_model(run_dir / "last.keras")


# ---- 4. one run per directory ----

def test_a_second_process_is_refused_and_a_stale_lock_taken_over(tmp_path):
    run = RunDir(tmp_path / "run")
    with run.locked():
        result = run_train(["--stages", "train", "--run-dir", run.root, *QUICK], timeout=120)
    assert result.returncode == 2
    assert error_line(result.stderr) == (
        f"error: {run.root} is in use by another train.py (process {os.getpid()} on "
        f"{socket.gethostname()}, see {run.lock}); wait for it to finish or stop it, or give "
        f"another --run-dir.")
    assert not os.path.exists(run.config)
    with open(run.lock, "w") as f:
        f.write("999999999\n")  # a crashed process's pid, no lock held
    with run.locked():
        assert json.loads(open(run.lock).read()) == {"pid": os.getpid(),
                                                     "host": socket.gethostname()}


# ---- 5. every failure is one clear line ----

def test_run_directory_problems_name_the_folder(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for run_dir, message in (
            (a_file, f"error: The run directory {a_file} is a file, not a folder"),
            (a_file / "run", f"error: Cannot create the run directory {a_file / 'run'}: "
                             f"Not a directory"),
            # Root ignores file modes; sysfs refuses new folders even to root.
            ("/sys/fs/resnet-keras-run", "error: Cannot create the run directory "
                                         "/sys/fs/resnet-keras-run: Operation not permitted")):
        status, err = _error_line(capsys, ["--stages", "train", "--run-dir", str(run_dir)])
        assert status == 2 and err.startswith(message), err


def test_no_space_left_keeps_the_previous_file(tmp_path, monkeypatch, capsys):
    from resnet_keras.backend import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    path = tmp_path / "last.keras"
    model_files.save_model(model, path)
    before = path.read_bytes()

    def full_disk(filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"PK partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filepath))

    monkeypatch.setattr(model, "save", full_disk)
    with pytest.raises(OSError, match=f"Could not write {path}: No space left on device; the "
                                      f"previous last.keras is unchanged"):
        model_files.save_model(model, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["last.keras"]

    run = RunDir(tmp_path)
    run.write_json(run.state, {"completed": []})

    def full_disk_json(data, f, **kwargs):
        f.write('{"compl')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(json, "dump", full_disk_json)
    assert stages.command_line(lambda: run.write_json(run.state, {"completed": ["train"]})) == 2
    assert capsys.readouterr().err == (f"error: Could not write {run.state}: No space left on "
                                       f"device; the previous state.json is unchanged\n")
    assert sorted(os.listdir(tmp_path)) == ["last.keras", "state.json"]
    assert run.read_json(run.state) == {"completed": []}


@pytest.mark.parametrize("args, message", [
    (["--train.epochs", "inf"], "error: train.epochs=inf is not a finite number."),
    (["--train.epochs", "nan"], "error: train.epochs=nan is not a finite number."),
    (["--train.learning_rate", "-0.1"], "error: train.learning_rate must be > 0, got -0.1."),
    (["--export.variants", "float32,int4"],
     "error: export.variants='int4' is not valid. Valid values: float32, fp16, dynamic, int8, "
     "int8_qat, int8_float_io, int16x8, int4_weights."),
    (["--stages", "train,export"],
     "error: Nothing will make what stages=train,export needs: {run} has no QAT model "
     "(qat.keras: the qat stage makes it, for export.variants int8_qat). Add it (--stages "
     "train,qat,export) or leave int8_qat out (--export.variants "
     "float32,fp16,dynamic,int8,int8_float_io,int16x8,int4_weights)."),
    # Everything missing in one message: following it leads to no second error.
    (["--stages", "export"],
     "error: Nothing will make what stages=export needs: {run} has no trained model "
     "(last.keras: the train stage makes it), no QAT model (qat.keras: the qat stage makes it, "
     "for export.variants int8_qat). Add them (--stages train,qat,export)."),
])
def test_bad_values_are_refused_before_any_stage(tmp_path, capsys, args, message):
    run_dir = tmp_path / "run"
    assert _error_line(capsys, ["--run-dir", str(run_dir), *args]) == (
        2, message.format(run=run_dir))
    assert not run_dir.exists()


def test_a_config_file_with_a_syntax_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: [5\n")
    status, err = _error_line(capsys, ["--config", str(bad)])
    assert status == 2 and err.startswith(f"error: Configuration file {bad} is not valid YAML "
                                          f"at line 3, column 1"), err


@pytest.mark.parametrize("name, text, message", [
    ("config.json", '{"model": {"name": "resn', "config.json is truncated or corrupt (not valid "
                                                "JSON: Unterminated string"),
    ("config.json", "[]", "config.json is corrupt: it holds a list, not a JSON object."),
    ("state.json", '{"completed": ["tra', "state.json is truncated or corrupt (not valid JSON"),
    ("state.json", '{"completed": 3}', "state.json is corrupt: 'completed' should list stages"),
])
def test_a_corrupt_run_file_on_resume(tmp_path, capsys, name, text, message):
    run = RunDir(tmp_path / "run")
    run.create()
    run.write_json(run.config, config_lib.to_dict(config_lib.resolve()))
    with open(os.path.join(run.root, name), "w") as f:
        f.write(text)
    status, err = _error_line(capsys, ["--resume", run.root])
    assert status == 2 and err.startswith(f"error: {os.path.join(run.root, name)}"), err
    assert message in err


def test_a_truncated_last_model_under_the_export_stage(tmp_path, capsys):
    from resnet_keras.backend import keras

    run = RunDir(tmp_path / "run")
    run.create()
    model_files.save_model(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]),
                           run.last_model)
    data = open(run.last_model, "rb").read()
    with open(run.last_model, "wb") as f:
        f.write(data[:-100])
    status, err = _error_line(capsys, ["--stages", "export", "--run-dir", run.root,
                                       "--export.variants", "float32"])
    assert (status, err) == (2, f"error: {run.last_model} is not a whole .keras model file (not "
                                f"a zip archive): it is truncated or corrupt.")
