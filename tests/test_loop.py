"""Tests for training/loop.py and its callbacks (training/callbacks.py, training/history.py).

The train stage, its checkpoints, resume, NaN guard and head phase run through
train.py on digits with a few steps; the units (history rows, the head phase's
skip) in this process. A canary pins the private tf_keras internals
`NaNSafeBackupAndRestore` overrides.
"""

import csv
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tf_keras
from jobs import FEW_STEPS, ROOT, run_train

import resnet_keras as rk
from job import config as config_lib
from resnet_keras.backend import keras
from rundir import RunDir, model_files
from training.loop import train_head

# ---- the train stage ----

def test_train_stage_writes_the_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(["--stages", "train", "--run-dir", str(run_dir), *FEW_STEPS])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[train] done in" in result.stdout
    for name in ("config.json", "history.csv", "last.keras", "training_curve.png",
                 "train_result.json", "state.json"):
        assert (run_dir / name).exists(), name
    # No validation split: the best epoch would be chosen on the test split, so none is kept.
    assert not (run_dir / "best.keras").exists()
    assert os.listdir(run_dir / "logs")
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["train"]["epochs"] == 2 and saved["model"]["name"] == "resnet20"
    with open(run_dir / "history.csv") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["0", "1"]
    train_result = json.loads((run_dir / "train_result.json").read_text())
    assert 0.0 <= train_result["test_top1"] <= 1.0
    # images/s counts the training steps alone: each epoch's evaluation and saves are apart.
    train, held_out = train_result["train_seconds"], train_result["held_out_seconds"]
    assert 0 < train and 0 < held_out and train + held_out <= train_result["seconds"]
    assert train_result["images_per_second"] == pytest.approx(2 * 4 * 16 / train, rel=0.02)
    assert re.search(r"epoch 2/2 .* \[train \d+\.\d s, test \d+\.\d s; \d+ s\]",
                     result.stdout + result.stderr)


def _wait_for(predicate, process, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.2)
    return False


def test_killed_run_resumes_from_last_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    args = ["--stages", "train", "--run-dir", str(run_dir), "--train.epochs", "3",
            "--train.steps_per_epoch", "12", "--train.batch_size", "16",
            "--train.save_every_steps", "5"]
    process = subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Kill -9 once a mid-epoch backup of the second epoch exists: the backup's 4th save
    # (steps 5, 10, 12 = the first epoch's end, 17), read from the checkpoint state, so a
    # loaded machine cannot make the kill come earlier.
    def second_epoch_backup():
        state = run_dir / "backup" / "chief" / "checkpoint"
        saved = re.search(r'model_checkpoint_path: "ckpt-(\d+)"',
                          state.read_text() if state.exists() else "")
        return bool(saved) and int(saved.group(1)) >= 4
    reached = _wait_for(second_epoch_backup, process, timeout=240)
    process.send_signal(signal.SIGKILL)
    output = process.communicate()[0]
    assert reached, output[-3000:]
    assert process.returncode == -signal.SIGKILL

    result = run_train(["--resume", str(run_dir)])
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = [line for line in result.stdout.splitlines() if "resumed from" in line]
    assert resumed, result.stdout[-3000:]
    iteration = int(resumed[0].rsplit("iteration", 1)[1])
    assert iteration >= 12, "the optimizer state of the killed run was restored"
    model = model_files.load_model(run_dir / "last.keras")
    assert int(model.optimizer.iterations.numpy()) == 3 * 12
    with open(run_dir / "history.csv") as f:
        epochs = [int(row["epoch"]) for row in csv.DictReader(f)]
    assert epochs == sorted(set(epochs)) and epochs[-1] == 2


def test_best_model_is_chosen_on_the_validation_split(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(["--stages", "train", "--run-dir", str(run_dir), *FEW_STEPS,
                        "--data.val_split", "0.1"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "best.keras").exists()
    assert "val top-1" in result.stdout and "1293 train / 144 val images" in result.stdout


def test_nan_loss_stops_with_a_message_and_keeps_good_weights(tmp_path):
    run_dir = tmp_path / "run"
    args = ["--stages", "train", "--run-dir", str(run_dir), "--train.steps_per_epoch", "4",
            "--train.batch_size", "16", "--train.save_every_steps", "1"]
    result = run_train([*args, "--train.epochs", "1"])
    assert result.returncode == 0, result.stderr[-3000:]
    good = model_files.load_model(run_dir / "last.keras").get_weights()
    # The same run continued for two more epochs at a rate that diverges at once.
    result = run_train([*args, "--train.epochs", "3", "--train.learning_rate", "1e12"])
    assert result.returncode == 2
    # At 1e12 the BatchNorm moving variances overflow before the loss does.
    assert "error: Training diverged at epoch 2, step " in result.stderr
    assert "Lower the learning rate" in result.stderr
    assert "Traceback" not in result.stderr
    kept = model_files.load_model(run_dir / "last.keras").get_weights()
    assert all(np.isfinite(w).all() for w in kept)
    for a, b in zip(good, kept):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_default_training_reaches_97_percent_on_digits(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(["--stages", "train", "--run-dir", str(run_dir)], timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    train_result = json.loads((run_dir / "train_result.json").read_text())
    assert train_result["test_top1"] >= 0.97


# ---- history, head phase ----

def test_a_resumed_run_drops_the_rows_of_epochs_it_trains_again(tmp_path):
    from training.history import keep_rows_before
    history = tmp_path / "history.csv"
    history.write_text("epoch,accuracy,loss\n0,0.5,1.0\n1,0.6,0.9\n2,0.7,0.8\n")
    keep_rows_before(str(history), 2)  # the backup is from inside epoch 2 (0-based)
    assert history.read_text() == "epoch,accuracy,loss\n0,0.5,1.0\n1,0.6,0.9\n"
    keep_rows_before(str(history), 0)  # no backup: the run starts over
    assert history.read_text() == "epoch,accuracy,loss\n"


def test_a_finished_head_phase_is_loaded_not_repeated(tmp_path):
    run = RunDir(tmp_path / "run")
    os.makedirs(run.root)
    done = rk.build_model("resnet20", classes=10)
    done.save(run.head_model)
    model = rk.build_model("resnet20", classes=10)
    config = config_lib.resolve(overrides={"model.weights": "x.h5", "train.head_epochs": "1"})
    seconds = train_head(model, train_cfg=config.train, run=run, dataset=None, plan=None,
                         strategy=None, inputs=None, jit_compile=False)
    assert seconds == 0.0
    for a, b in zip(done.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_truncated_head_model_is_named_not_opened(tmp_path):
    run = RunDir(tmp_path / "run")
    os.makedirs(run.root)
    rk.build_model("resnet20", classes=10).save(run.head_model)
    with open(run.head_model, "r+b") as f:
        f.truncate(os.path.getsize(run.head_model) // 2)
    config = config_lib.resolve(overrides={"model.weights": "x.h5", "train.head_epochs": "1"})
    with pytest.raises(ValueError, match=f"{run.head_model} is not a whole .keras model file "
                                         r"\(not a zip archive\): it is truncated or corrupt"):
        train_head(rk.build_model("resnet20", classes=10), train_cfg=config.train, run=run,
                   dataset=None, plan=None, strategy=None, inputs=None, jit_compile=False)


# ---- the tf_keras internals NaNSafeBackupAndRestore relies on ----

# NaNSafeBackupAndRestore (training/callbacks.py) overrides private members of tf_keras's
# BackupAndRestore; this canary fails on another tf_keras than the one they were
# checked against, or when one of them changes meaning.
CHECKED_TF_KERAS = "2.21."


class _Killed(Exception):
    """What `_Stop` interrupts `fit` with."""


class _Stop(keras.callbacks.Callback):
    """Interrupts `fit` after batch `at[1]` of epoch `at[0]`, as a kill would."""

    def __init__(self, at):
        super().__init__()
        self.at, self.epoch = at, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise _Killed


class _Steps(keras.callbacks.Callback):
    """Records the (epoch, batch) of every training step `fit` runs."""

    def __init__(self):
        super().__init__()
        self.steps, self.epoch = [], 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self.steps.append((self.epoch, int(batch)))


def _resumed_steps(backup_dir, *callbacks):
    """Fits 3 epochs x 3 steps with `callbacks` until interrupted, then resumes from the
    backup: the steps the resumed `fit` runs and its optimizer's final step count."""
    x, y = np.ones((6, 2), "float32"), np.ones((6, 1), "float32")

    def fit(*callbacks):
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(0.01), "mse")
        try:
            model.fit(x, y, batch_size=2, epochs=3, callbacks=list(callbacks), verbose=0)
        except _Killed:
            pass
        return model

    fit(*callbacks)
    steps = _Steps()
    model = fit(keras.callbacks.BackupAndRestore(backup_dir, save_freq=100,
                                                 delete_checkpoint=False), steps)
    return steps.steps, int(model.optimizer.iterations.numpy())


def test_the_tf_keras_backup_internals_are_as_checked(tmp_path):
    base = keras.callbacks.BackupAndRestore
    assert tf_keras.__version__.startswith(CHECKED_TF_KERAS), (
        f"tf_keras {tf_keras.__version__} is installed; NaNSafeBackupAndRestore "
        f"(training/callbacks.py) was checked against tf_keras {CHECKED_TF_KERAS}x only. Re-check "
        f"in tf_keras/src/callbacks.py that BackupAndRestore._backup(epoch, batch=0) still "
        f"writes the checkpoint at the position on_epoch_begin and on_train_batch_begin "
        f"recorded, that _batches_count still counts the batches since the last backup (reset "
        f"to 0 before _backup) and _current_epoch is still set by on_epoch_begin; then run this "
        f"test's checks and update CHECKED_TF_KERAS.")
    signature = inspect.signature(base._backup)
    assert list(signature.parameters) == ["self", "epoch", "batch"]
    assert signature.parameters["batch"].default == 0
    fresh = base(str(tmp_path / "unused"), save_freq=2)
    assert (fresh._batches_count, fresh._current_epoch) == (0, 0)

    # The base's step backups: each _backup sees the epoch in _current_epoch and the
    # counter already reset; the counter runs on across epochs.
    backups = []

    class Recording(base):
        def _backup(self, epoch, batch=0):
            backups.append((epoch, batch, self._current_epoch, self._batches_count))
            super()._backup(epoch, batch)

    recording = Recording(str(tmp_path / "steps"), save_freq=2, delete_checkpoint=False)
    steps, iterations = _resumed_steps(str(tmp_path / "steps"), recording, _Stop((1, 1)))
    assert backups == [(0, 1, 0, 0), (1, 0, 1, 0)] and recording._batches_count == 1
    # Backed up after step (1, 0): the resumed fit goes on at (1, 1), optimizer state kept.
    assert steps[0] == (1, 1) and iterations == 9

    # NaNSafeBackupAndRestore.back_up_epoch's call: a _backup at an epoch's end, after its
    # last batch, resumes at the next epoch's first step.
    class EpochEnd(base):
        def on_epoch_end(self, epoch, logs=None):
            self._backup(epoch=epoch, batch=2)

    epoch_end = EpochEnd(str(tmp_path / "epoch"), save_freq=100, delete_checkpoint=False)
    steps, iterations = _resumed_steps(str(tmp_path / "epoch"), epoch_end, _Stop((1, 1)))
    assert steps[0] == (1, 0) and len(steps) == 6 and iterations == 3 + 6
