"""Trains one net of the degradation experiment and measures its error curves (arXiv 1512.03385).

Training error is measured after each epoch on the whole training split, not
augmented, model in inference mode: the error of the weights at that point,
as the paper's Fig. 6 plots it.
"""

import logging
import time

from resnet_keras.registry import get_spec

logger = logging.getLogger(__name__)


def evaluation_arrays(dataset):
    """The training split (not augmented) and the test split as in-memory arrays.

    Both splits are evaluated after every epoch of every net: preparing their
    pixels once is cheaper than running the input pipeline each time. CIFAR-10
    takes 0.7 GB this way.

    Returns:
        {"train": (float32 images, int32 labels), "test": (...)}.
    """
    import numpy as np

    def collect(batches):
        images, labels = zip(*batches.as_numpy_iterator())
        return np.concatenate(images), np.concatenate(labels)

    batch = min(256, dataset.num_train)
    return {"train": collect(dataset.train(batch, shuffle=False, augment=False)),
            "test": collect(dataset.test(batch))}


def _make_recorder(keras, *, name, arrays, batch_size, guard, clock, total_epochs):
    import numpy as np

    from datasets.input_pipeline import array_batches
    from training.callbacks import current_learning_rate

    class ErrorCurves(keras.callbacks.Callback):
        """Measures training and test error after every epoch and prints one line."""

        def __init__(self):
            super().__init__()
            self.start, self.cpu_start = time.time(), time.process_time()
            self.curves = {k: [] for k in ("epoch", "train_error", "train_error_running",
                                           "test_error", "loss", "lr", "seconds",
                                           "cpu_seconds")}
            self.curves["final_correct"] = None

        def _correct(self, split):
            images, labels = arrays[split]
            scores = self.model.predict(array_batches(images, batch_size=batch_size), verbose=0)
            return np.asarray(scores).argmax(-1) == np.asarray(labels).reshape(-1)

        def on_epoch_end(self, epoch, logs=None):
            if guard.diverged_at:
                return  # The weights are NaN: nothing left to measure.
            logs = logs or {}
            correct = {split: self._correct(split) for split in ("train", "test")}
            # The last measured epoch's flags: what the paired depth comparisons need.
            self.curves["final_correct"] = {split: "".join("1" if c else "0" for c in flags)
                                            for split, flags in correct.items()}
            row = {"epoch": epoch + 1,
                   "train_error": 100 * (1 - float(correct["train"].mean())),
                   "train_error_running": 100 * (1 - float(logs["accuracy"])),
                   "test_error": 100 * (1 - float(correct["test"].mean())),
                   "loss": float(logs["loss"]),
                   "lr": current_learning_rate(self.model.optimizer),
                   "seconds": round(time.time() - self.start, 2),
                   # CPU time of every thread: the cost, whatever else shared the machine.
                   "cpu_seconds": round(time.process_time() - self.cpu_start, 2)}
            for key, value in row.items():
                self.curves[key].append(value)
            logger.info("%-9s epoch %3d/%d  train error %6.2f%%  test error %6.2f%%  loss "
                        "%.4f  lr %.3g  [%.0f s; total %.0f s]", name, epoch + 1, total_epochs,
                        row["train_error"], row["test_error"], row["loss"], row["lr"],
                        row["seconds"], time.time() - clock)

    return ErrorCurves()


def train_net(config, dataset, *, label=None, arrays=None, clock=None):
    """Trains `config.model` on `dataset` and records its error curves.

    Args:
        config: a `Config` from `command.net_config`.
        dataset: the `datasets.Dataset` named in the config.
        label: the net's name in the progress lines (default the model's).
        arrays: `evaluation_arrays(dataset)`, computed here if None.
        clock: `time.time()` at the start of the whole experiment, for the
            progress lines' total.

    Returns:
        dict of per-epoch lists (`epoch`, `train_error`, `train_error_running`,
        `test_error`, `loss`, `lr`, `seconds`, `cpu_seconds`) plus
        `final_correct` (the last measured epoch's per-image flags),
        `residual`, `depth`, `params`, `steps_per_epoch`, `precision` (the
        policy chosen and why) and `diverged_at` ((epoch, step) of a NaN
        loss, or None).
    """
    from resnet_keras.backend import keras
    from training import distribute
    from training.callbacks import NaNGuard
    from training.loop import compiled_training_model, fit_inputs
    from training.plan import TrainingPlan

    cfg = config.train
    # Drops the previous net's graph state, as Keras advises when building models in a loop.
    keras.backend.clear_session()
    keras.utils.set_random_seed(cfg.seed)
    precision = distribute.choose_precision(cfg.mixed_precision)
    plan = TrainingPlan.for_training(cfg, dataset, replicas=1)
    model = compiled_training_model(config.model, cfg, dataset=dataset, plan=plan,
                                    jit_compile=distribute.resolve_switch(cfg.xla),
                                    policy=precision.policy)
    # The recorder measures both splits itself, so fit_inputs' test pipeline is unused.
    train_ds, _ = fit_inputs(dataset, batch_size=plan.global_batch,
                             label_smoothing=cfg.label_smoothing, seed=cfg.seed,
                             augment=config.data.augment)
    guard = NaNGuard()
    name = label or config.model.name
    recorder = _make_recorder(
        keras, name=name, arrays=arrays or evaluation_arrays(dataset),
        # Larger evaluation batches: no gradients to hold, fewer steps, faster on CPU.
        batch_size=4 * plan.global_batch, guard=guard, clock=clock or time.time(),
        total_epochs=plan.epochs)
    logger.info("%-9s %s parameters, %s, precision %s (%s) [total %.0f s]",
                name, f"{model.count_params():,}", plan.describe(),
                precision.policy, precision.reason, time.time() - (clock or time.time()))
    model.fit(train_ds, epochs=plan.epochs, steps_per_epoch=plan.steps_per_epoch,
              callbacks=[guard, recorder], verbose=0)
    spec = get_spec(config.model.name)
    if guard.diverged_at:
        epoch, step = guard.diverged_at
        logger.info("%-9s diverged (NaN loss) at epoch %d, step %d; its curves stop at the "
                    "last finite epoch", name, epoch, step)
    return {**recorder.curves, "residual": spec.residual, "depth": spec.depth,
            "params": model.count_params(), "steps_per_epoch": plan.steps_per_epoch,
            "precision": precision.to_dict(),
            "diverged_at": list(guard.diverged_at) if guard.diverged_at else None}
