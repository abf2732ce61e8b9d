"""Float training of a ResNet with Keras `fit`: schedule, checkpoints, resume, NaN guard.

The recipe is the paper's (arXiv 1512.03385 sec. 3.4 and 4.2): SGD with
momentum, weight decay on kernels only, a step (or cosine) learning-rate
schedule. A killed run resumes from its last backup, mid-epoch included.
"""

import csv
import json
import math
import os
import time

import numpy as np

from resnet_keras.backend import keras, tf
from resnet_keras.models import build_model
from training import distribute


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def _finite(logs) -> bool:
    return logs is not None and np.isfinite(logs.get("loss", 0.0))


class NaNSafeBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that never backs up weights a non-finite loss produced.

    It also says where a resumed run picks up, so a log shows what was kept.
    """

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        epoch = int(self._training_state._ckpt_saved_epoch.numpy())
        if epoch >= 0:
            print(f"  resumed from {self.backup_dir}: epoch {epoch + 1}, step "
                  f"{int(self._training_state._ckpt_saved_batch.numpy()) + 1}, optimizer "
                  f"iteration {int(self.model.optimizer.iterations.numpy())}", flush=True)

    def on_train_batch_end(self, batch, logs=None):
        if _finite(logs):
            super().on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if _finite(logs):
            super().on_epoch_end(epoch, logs)


class NaNGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss and remembers where."""

    def __init__(self):
        super().__init__()
        self.diverged_at = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if not _finite(logs):
            self.diverged_at = (self._epoch + 1, batch + 1)
            self.model.stop_training = True


class RunCheckpoints(keras.callbacks.Callback):
    """Saves `last.keras` every epoch and `best.keras` on a better validation top-1.

    Skips epochs whose loss is not finite, so both files always hold usable weights.
    """

    def __init__(self, run_dir):
        super().__init__()
        self.run_dir = run_dir
        self.best = -1.0

    def on_epoch_end(self, epoch, logs=None):
        if not _finite(logs):
            return
        self.model.save(os.path.join(self.run_dir, "last.keras"))
        accuracy = logs.get("val_accuracy", -1.0)
        if accuracy > self.best:
            self.best = accuracy
            self.model.save(os.path.join(self.run_dir, "best.keras"))


class StageProgress(keras.callbacks.Callback):
    """One line per epoch with the elapsed time, for logs that are not a terminal."""

    def __init__(self, total_epochs):
        super().__init__()
        self.total_epochs = total_epochs
        self.start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        print(f"  epoch {epoch + 1}/{self.total_epochs}  loss {logs.get('loss', float('nan')):.4f}  "
              f"top-1 {logs.get('accuracy', float('nan')):.4f}  "
              f"test top-1 {logs.get('val_accuracy', float('nan')):.4f}  "
              f"lr {current_learning_rate(self.model.optimizer):.4g}  "
              f"[{time.time() - self.start:.0f} s]", flush=True)


def current_learning_rate(optimizer) -> float:
    lr = optimizer.learning_rate
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        return float(lr(optimizer.iterations))
    return float(keras.backend.get_value(lr))


def learning_rate_schedule(cfg, *, steps_per_epoch, base_lr):
    """The learning rate as a built-in Keras schedule (serializable with the model).

    `step` divides by 10 at each of `lr_decay_epochs`; warmup then holds 1/10
    of the rate, as the paper does for ResNet-110 (sec. 4.2). `cosine` warms
    up linearly to `base_lr` and decays to zero (Loshchilov & Hutter).
    """
    total = max(1, int(round(cfg.epochs * steps_per_epoch)))
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if cfg.schedule == "constant":
        return base_lr
    if cfg.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=base_lr / 10 if warmup else base_lr,
            decay_steps=max(1, total - warmup), warmup_target=base_lr if warmup else None,
            warmup_steps=warmup)
    boundaries = [int(round(e * steps_per_epoch)) for e in cfg.lr_decay_epochs]
    values = [base_lr / 10 ** i for i in range(len(boundaries) + 1)]
    if warmup:
        boundaries, values = [warmup] + boundaries, [base_lr / 10] + values
    if not boundaries:
        return base_lr
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def build_training_model(config, *, num_classes, image_shape):
    """The float model for `config.model`, with weight decay as an L2 penalty on kernels."""
    cfg = config.model
    wd = config.train.weight_decay
    return build_model(
        cfg.name, variant=cfg.variant, shortcut=cfg.shortcut, classes=num_classes,
        input_shape=image_shape, bn_momentum=cfg.bn_momentum,
        zero_init_last_bn=cfg.zero_init_last_bn,
        # SGD weight decay wd adds wd * w to the gradient: an L2 loss of wd / 2 * |w|^2.
        kernel_regularizer=keras.regularizers.L2(wd / 2) if wd > 0 else None)


def compile_model(model, *, optimizer, num_classes, label_smoothing, jit_compile):
    """Compiles with cross-entropy, top-1 (`accuracy`) and top-5 when there are > 5 classes."""
    if label_smoothing:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
        if num_classes > 5:
            metrics.append(keras.metrics.TopKCategoricalAccuracy(5, name="top5"))
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        if num_classes > 5:
            metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5"))
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=jit_compile)


def compiled_training_model(config, *, dataset, steps_per_epoch, base_lr, label_smoothing,
                            jit_compile):
    """`build_training_model` compiled with SGD + momentum on the configured schedule."""
    model = build_training_model(config, num_classes=dataset.num_classes,
                                 image_shape=dataset.image_shape)
    optimizer = keras.optimizers.SGD(
        learning_rate_schedule(config.train, steps_per_epoch=steps_per_epoch, base_lr=base_lr),
        momentum=config.train.momentum)
    compile_model(model, optimizer=optimizer, num_classes=dataset.num_classes,
                  label_smoothing=label_smoothing, jit_compile=jit_compile)
    return model


def fit_inputs(dataset, *, batch_size, label_smoothing, seed, augment, val=False):
    """Training and evaluation tf.data pipelines, one-hot labels for label smoothing."""
    train = dataset.train(batch_size, shuffle=True, augment=augment, seed=seed, repeat=True)
    has_val = val and callable(getattr(dataset, "val", None)) and dataset.num_val
    test = dataset.val(batch_size) if has_val else dataset.test(batch_size)
    if label_smoothing:
        one_hot = lambda x, y: (x, tf.one_hot(y, dataset.num_classes))  # noqa: E731
        train, test = train.map(one_hot), test.map(one_hot)
    return train, test


def plot_history(history_csv, path) -> None:
    """Training curve PNG (loss and error, train and test) from `history.csv`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(history_csv) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 4))
    for key, style, label in (("loss", "-", "train"), ("val_loss", "-", "test")):
        ax_loss.plot(epochs, [float(r[key]) for r in rows], style, label=label)
    for key, label in (("accuracy", "train"), ("val_accuracy", "test")):
        ax_err.plot(epochs, [100 * (1 - float(r[key])) for r in rows], label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_err.set(xlabel="epoch", ylabel="top-1 error (%)", title="error")
    for ax in (ax_loss, ax_err):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(config, run_dir, dataset) -> dict:
    """Trains `config.model` on `dataset`, resuming from `run_dir`'s backup if any.

    Args:
        config: a resolved `training.config.Config`.
        run_dir: str, the run directory (created by the caller).
        dataset: a `datasets.Dataset`.

    Returns:
        dict written as `train_result.json`: test top-1/top-5, loss, epochs,
        steps, seconds, training images per second.

    Raises:
        ValueError: the batch does not fit the training set.
        TrainingDiverged: the loss became NaN; the last good checkpoint is kept.
    """
    cfg = config.train
    tf.keras.utils.set_random_seed(cfg.seed)
    distribute.set_mixed_precision(distribute.resolve_switch(cfg.mixed_precision))
    strategy = distribute.strategy_for(cfg)
    replicas = strategy.num_replicas_in_sync
    global_batch = cfg.batch_size * replicas
    if global_batch > dataset.num_train:
        raise ValueError(
            f"The global batch ({cfg.batch_size} x {replicas} replicas = {global_batch}) is "
            f"larger than the training set ({dataset.num_train} images of {dataset.name}). "
            f"Use --train.batch_size {max(1, dataset.num_train // replicas)} or smaller.")
    steps_per_epoch = cfg.steps_per_epoch or math.ceil(dataset.num_train / global_batch)
    epochs = math.ceil(cfg.epochs)
    base_lr = cfg.learning_rate * global_batch / cfg.reference_batch_size
    jit = distribute.resolve_switch(cfg.xla)
    print(f"  {config.model.name} on {dataset.name}: {dataset.num_train} train / "
          f"{dataset.num_test} test images, {replicas} replica(s) "
          f"({distribute.strategy_name(strategy)}), global batch {global_batch}, lr {base_lr:g}, "
          f"{epochs} epochs x {steps_per_epoch} steps, mixed precision "
          f"{keras.mixed_precision.global_policy().name}, XLA {'on' if jit else 'off'}",
          flush=True)

    with strategy.scope():
        model = compiled_training_model(config, dataset=dataset, steps_per_epoch=steps_per_epoch,
                                        base_lr=base_lr, label_smoothing=cfg.label_smoothing,
                                        jit_compile=jit)
    train_ds, test_ds = fit_inputs(dataset, batch_size=global_batch,
                                   label_smoothing=cfg.label_smoothing, seed=cfg.seed,
                                   augment=config.data.augment, val=True)

    guard = NaNGuard()
    history_csv = os.path.join(run_dir, "history.csv")
    callbacks = [
        guard,
        NaNSafeBackupAndRestore(os.path.join(run_dir, "backup"),
                                save_freq=cfg.save_every_steps, delete_checkpoint=False),
        keras.callbacks.CSVLogger(history_csv, append=True),
        keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"), profile_batch=0),
        RunCheckpoints(run_dir),
        StageProgress(epochs),
    ]
    start = time.time()
    history = model.fit(train_ds, epochs=epochs, steps_per_epoch=steps_per_epoch,
                        validation_data=test_ds, callbacks=callbacks,
                        verbose=cfg.verbose if cfg.verbose != 2 else 0)
    seconds = time.time() - start
    if guard.diverged_at:
        epoch, step = guard.diverged_at
        kept = ("The last good weights are in " + (f"{run_dir}/last.keras and " if os.path.exists(
            os.path.join(run_dir, "last.keras")) else "") + f"{run_dir}/backup."
                if os.path.exists(os.path.join(run_dir, "backup")) else
                "No checkpoint had been saved yet.")
        raise TrainingDiverged(
            f"The loss became NaN at epoch {epoch}, step {step}; training stopped. {kept} Lower the "
            f"learning rate (--train.learning_rate, now {cfg.learning_rate}) or add warmup "
            f"(--train.warmup_epochs 1).")
    if os.path.exists(history_csv):
        plot_history(history_csv, os.path.join(run_dir, "training_curve.png"))

    last = keras.models.load_model(os.path.join(run_dir, "last.keras"), safe_mode=True)
    compile_model(last, optimizer="sgd", num_classes=dataset.num_classes,
                  label_smoothing=cfg.label_smoothing, jit_compile=False)
    _, test_ds = fit_inputs(dataset, batch_size=global_batch,
                            label_smoothing=cfg.label_smoothing, seed=cfg.seed, augment=False)
    metrics = last.evaluate(test_ds, verbose=0, return_dict=True)
    steps_run = len(history.history.get("loss", [])) * steps_per_epoch
    result = {
        "model": config.model.name,
        "dataset": dataset.name,
        "test_top1": float(metrics["accuracy"]),
        "test_top5": float(metrics["top5"]) if "top5" in metrics else None,
        "test_loss": float(metrics["loss"]),
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "global_batch": global_batch,
        "replicas": replicas,
        "seconds": round(seconds, 2),
        "images_per_second": round(steps_run * global_batch / seconds, 1) if steps_run else None,
    }
    with open(os.path.join(run_dir, "train_result.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result
