"""The Keras callbacks of the training loop: NaN guard, backups, checkpoints, progress lines.

`training.loop` runs them in this order: the guard stops training at the first
non-finite loss or variable, the backup saves sound weights for a resumed run
(mid-epoch included), the checkpoints keep the last and the best model, the
progress lines time each epoch, and the epoch's backup comes last, once the
epoch is logged. In a multi-worker job every worker runs them; only the
chief's files are kept (`training.distribute`).
"""

import logging
import shutil
import time

import numpy as np

from resnet_keras.backend import keras, tf
from rundir import model_files, replacing
from training import distribute
from training.history import best_before, keep_rows_before

logger = logging.getLogger(__name__)


def _finite(logs) -> bool:
    return logs is not None and np.isfinite(logs.get("loss", 0.0))


class NaNGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss or variable and remembers where.

    The loss is checked every step; the variables at every epoch's end and
    whenever a checkpoint asks (`weights_finite`). A finite loss does not
    prove finite weights: at a huge rate the BatchNorm moving variances
    overflow while the loss, computed with batch statistics, stays finite.
    """

    def __init__(self):
        super().__init__()
        self.diverged_at = None
        self.reason = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def _stop(self, batch, reason):
        if self.diverged_at is None:
            self.diverged_at = (self._epoch + 1, batch + 1)
            self.reason = reason
        self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        if not _finite(logs):
            self._stop(batch, f"the loss became {(logs or {}).get('loss')}")

    def on_epoch_end(self, epoch, logs=None):
        self.weights_finite(batch=((self.params or {}).get("steps") or 1) - 1)

    def weights_finite(self, *, batch) -> bool:
        """Whether training is sound so far; checks every variable of the model and optimizer."""
        if self.diverged_at is None:
            bad = model_files.non_finite_variables(self.model)
            if bad:
                self._stop(batch, f"{len(bad)} variable(s) became NaN or inf (first: {bad[0]})")
        return self.diverged_at is None


class NaNSafeBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that backs up only sound weights, and an epoch only once it is logged.

    Mid-epoch backups come every `save_freq` steps, checked by `guard`. The
    backup of an epoch's end is left to `back_up_epoch`, which `EpochEndBackup`
    calls after the epoch's history row and `last.keras` are written: a kill
    before it resumes inside that epoch and writes its row again, once.

    It also says where a resumed run picks up, so a log shows what was kept:
    the restored optimizer's iteration count is the position in the plan. The
    epochs the run will train again lose their rows in `history`, so a kill
    between a row and the next backup does not leave that epoch twice.

    Args:
        backup_dir: str, the backup folder.
        guard: the run's `NaNGuard`.
        steps_per_epoch: int, to turn the iteration count into epoch and step.
        history: str, the CSV file `keras.callbacks.CSVLogger` appends to; this
            callback must come before the logger. None on a worker that keeps
            no history (not the chief of a multi-worker job).
        **kwargs: as `keras.callbacks.BackupAndRestore` (`save_freq` an int).

    It relies on three private members of tf_keras's `BackupAndRestore`
    (tf_keras/src/callbacks.py), checked against tf_keras 2.21.0:
    `_backup(epoch, batch=0)` writes the checkpoint, whose resume position is
    the epoch and batch that `on_epoch_begin` and `on_train_batch_begin` last
    recorded (so a backup after an epoch's last batch resumes at the next
    epoch); `_batches_count` counts the batches since the last backup, the
    base's `on_train_batch_end` resetting it to 0 before each `_backup`; and
    `_current_epoch` is the epoch `on_epoch_begin` saw.
    `test_the_tf_keras_backup_internals_are_as_checked` (tests/test_loop.py)
    fails on another tf_keras version or when one of them changes.
    """

    def __init__(self, backup_dir, *, guard, steps_per_epoch, history, **kwargs):
        super().__init__(backup_dir, **kwargs)
        self.guard = guard
        self.steps_per_epoch = steps_per_epoch
        self.history = history

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        iteration = int(self.model.optimizer.iterations.numpy())
        epoch, step = divmod(iteration, self.steps_per_epoch)
        if iteration:
            logger.info("  resumed from %s: epoch %d, step %d, optimizer iteration %d",
                        self.backup_dir, epoch + 1, step + 1, iteration)
        if self.history:
            keep_rows_before(self.history, epoch)

    def on_train_batch_end(self, batch, logs=None):
        self._batches_count += 1
        if (self._batches_count >= self.save_freq and batch + 1 < self.steps_per_epoch
                and self.guard.weights_finite(batch=batch)):
            self._batches_count = 0
            self._backup(epoch=self._current_epoch, batch=batch)

    def on_epoch_end(self, epoch, logs=None):
        pass  # `back_up_epoch`, later in the callback list

    def back_up_epoch(self, epoch):
        """Backs up the finished `epoch`, unless training diverged."""
        if self.guard.diverged_at is None:
            self._batches_count = 0
            self._backup(epoch=epoch, batch=self.steps_per_epoch - 1)

    def _backup(self, epoch, batch=0):
        try:
            super()._backup(epoch, batch)
        except tf.errors.OpError as e:
            # A collective the save needs aborted by a lost worker is no disk error.
            if distribute.means_a_lost_worker(e, self.model.distribute_strategy):
                raise
            raise OSError(f"Could not write the backup in {self.backup_dir}: {e.message}; "
                          f"the previous backup is kept.") from None


class EpochEndBackup(keras.callbacks.Callback):
    """Calls `NaNSafeBackupAndRestore.back_up_epoch`; it goes last in the callback list."""

    def __init__(self, backup):
        super().__init__()
        self.backup = backup

    def on_epoch_end(self, epoch, logs=None):
        self.backup.back_up_epoch(epoch)


class RunCheckpoints(keras.callbacks.Callback):
    """Saves the last model every epoch and, given a validation split, the best one.

    The best model is chosen on validation top-1 only: choosing it on the test
    split would make its test accuracy an optimistic estimate. The best so far
    is read from the history, so it survives a restart. Skips epochs after a
    divergence (`guard`), so both files always hold usable weights. In a
    multi-worker job every worker saves and only the chief's files are kept
    (`training.distribute.save_on_every_worker`).
    """

    def __init__(self, run, *, guard, keep_best):
        super().__init__()
        self.run = run
        self.guard = guard
        self.keep_best = keep_best

    def on_epoch_end(self, epoch, logs=None):
        if self.guard.diverged_at is not None or not _finite(logs):
            return
        strategy = self.model.distribute_strategy
        distribute.save_on_every_worker(self.model, self.run.last_model, strategy=strategy)
        if not distribute.writes_run_files(strategy):
            return
        accuracy = logs.get("val_accuracy", -1.0)
        if self.keep_best and accuracy > best_before(self.run.history, epoch):
            # The same model as last.keras: copied, not serialized (and made float32) again.
            with replacing(self.run.best_model) as partial:
                shutil.copyfile(self.run.last_model, partial)


class StageProgress(keras.callbacks.Callback):
    """One line per epoch with its times, for logs that are not a terminal; keeps the times.

    An epoch's training time runs from its start to the start of its
    evaluation on the held-out split (`fit` has waited for the last step by
    then), a mid-epoch backup (`train.save_every_steps`) included; what
    follows (the evaluation, then the saves at the epoch's end) is not
    training. Without an evaluation the training time ends at this callback's
    `on_epoch_end`.

    Args:
        total_epochs: int.
        held_out: str, what `fit`'s validation data is: "val" or "test".
        label: str, what the line counts, e.g. "head epoch" for fine-tuning's head phase.

    Attributes:
        train_seconds: list of float, each epoch's training time.
        held_out_seconds: list of float, each epoch's evaluation time.
    """

    def __init__(self, total_epochs, *, held_out="test", label="epoch"):
        super().__init__()
        self.total_epochs = total_epochs
        self.held_out = held_out
        self.label = label
        self.start = time.time()
        self.train_seconds = []
        self.held_out_seconds = []
        self._epoch_start = None
        self._held_out = []

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()
        self._held_out = []

    def on_test_begin(self, logs=None):
        if self._epoch_start is not None:  # `fit`'s evaluation, not a later `evaluate`
            self._held_out = [time.perf_counter()]

    def on_test_end(self, logs=None):
        if self._held_out:
            self._held_out.append(time.perf_counter())

    def on_epoch_end(self, epoch, logs=None):
        start, end = self._held_out if len(self._held_out) == 2 else (time.perf_counter(),) * 2
        self.train_seconds.append(start - self._epoch_start)
        self.held_out_seconds.append(end - start)
        self._epoch_start = None
        logs = logs or {}
        logger.info("  %s %d/%d  loss %.4f  top-1 %.4f  %s top-1 %.4f  lr %.4g  "
                    "[train %.1f s, %s %.1f s; %.0f s]", self.label, epoch + 1,
                    self.total_epochs, logs.get("loss", float("nan")),
                    logs.get("accuracy", float("nan")), self.held_out,
                    logs.get("val_accuracy", float("nan")),
                    current_learning_rate(self.model.optimizer), self.train_seconds[-1],
                    self.held_out, self.held_out_seconds[-1], time.time() - self.start)


def current_learning_rate(optimizer) -> float:
    lr = optimizer.learning_rate
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        return float(lr(optimizer.iterations))
    return float(keras.backend.get_value(lr))
