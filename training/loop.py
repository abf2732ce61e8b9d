"""Float training of a ResNet with Keras `fit`: schedule, checkpoints, resume, NaN guard.

The recipe is the paper's (arXiv 1512.03385 sec. 3.4 and 4.2): SGD with
momentum, weight decay on kernels only, a step (or cosine) learning-rate
schedule. A killed run resumes from its last backup, mid-epoch included.
Fine-tuning pretrained weights (`model.weights`) may first train only the new
top on the frozen backbone (`train.head_epochs`). In a multi-worker job every
worker trains and only the chief keeps the run's files (`training.distribute`).

`train` comes first, then the steps it takes in order; last, what every
training loop shares (QAT fine-tuning, the degradation experiment): the model,
its compilation on a `TrainingPlan`, its input pipelines. The callbacks that
guard, back up, checkpoint and time `fit` are `training.callbacks`.
"""

import contextlib
import dataclasses
import logging
import os
import time

from resnet_keras.backend import ONEDNN, keras, tf
from resnet_keras.models import build_model
from rundir import model_files
from training import distribute, pretrained
from training.callbacks import (
    EpochEndBackup,
    NaNGuard,
    NaNSafeBackupAndRestore,
    RunCheckpoints,
    StageProgress,
)
from training.history import plot_training_curve
from training.plan import TrainingPlan

logger = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss or a variable became NaN or infinite."""


def train(run, dataset, *, model_cfg, train_cfg, augment=True) -> dict:
    """Trains the job's model on `dataset`, resuming from the run's backup if any.

    Args:
        run: the `rundir.RunDir` (its folder created by the caller).
        dataset: a `datasets.Dataset`.
        model_cfg: the job's `model` section (`job.config.ModelConfig`).
        train_cfg: the job's `train` section (`job.config.TrainConfig`).
        augment: bool, the job's `data.augment`.

    Returns:
        dict written as `train_result.json`: test top-1/top-5, loss, epochs,
        steps; `seconds` in `fit`, of which `train_seconds` trained and
        `held_out_seconds` evaluated the held-out split every epoch (the
        rest: the saves at each epoch's end, `fit`'s start and end); training
        images per second over `train_seconds`; the pretrained weights
        loaded, the variant, whether the top was replaced (see
        `training.pretrained.record`), and the head phase's epochs, rate and
        seconds. A worker that is not the chief of its multi-worker job
        writes no file and returns None for the test metrics.

    Raises:
        ValueError: the batch does not fit the training set, or the pretrained
            weights do not fit the model.
        FileNotFoundError: the pretrained weights file does not exist.
        TrainingDiverged: the loss or a variable became NaN or inf; the last
            good checkpoint is kept.
        training.distribute.WorkerLost: a worker of the multi-worker job was
            lost; every worker resumes from the last backup.
        OSError: a checkpoint could not be written; the previous one is kept.
    """
    tf.keras.utils.set_random_seed(train_cfg.seed)
    setup = _Setup.decide(train_cfg, dataset)
    setup.log(model_cfg, dataset)
    model, weights = _built_model(model_cfg, train_cfg, dataset, setup)
    inputs = fit_inputs(dataset, batch_size=setup.plan.global_batch,
                        label_smoothing=train_cfg.label_smoothing, seed=train_cfg.seed,
                        augment=augment, val=True)
    head_seconds = 0.0
    if setup.head_plan:
        head_seconds = train_head(model, train_cfg=train_cfg, run=run, dataset=dataset,
                                  plan=setup.head_plan, strategy=setup.strategy, inputs=inputs,
                                  jit_compile=setup.jit)
    history, seconds, progress = _fit(model, run, dataset, setup=setup, train_cfg=train_cfg,
                                      inputs=inputs)
    chief = distribute.writes_run_files(setup.strategy)
    if chief and distribute.is_multi_worker(setup.strategy):
        logger.info("  the other workers are done and exit (any later stage runs on the chief "
                    "alone); TensorFlow logs them as unhealthy once their heartbeats stop: "
                    "expected")
    if chief and os.path.exists(run.history):
        plot_training_curve(run.history, run.training_curve)
    # The chief alone evaluates: the others keep no last.keras, and their weights are the same.
    metrics = (_test_metrics_of_last_model(run, dataset, setup=setup, train_cfg=train_cfg)
               if chief else {})
    result = {
        "model": model_cfg.name,
        "dataset": dataset.name,
        "test_top1": float(metrics["accuracy"]) if metrics else None,
        "test_top5": float(metrics["top5"]) if "top5" in metrics else None,
        "test_loss": float(metrics["loss"]) if metrics else None,
        **setup.plan_record(),
        "seconds": round(seconds, 2),
        "train_seconds": round(sum(progress.train_seconds), 2),
        "held_out_seconds": round(sum(progress.held_out_seconds), 2),
        "images_per_second": _images_per_second(history, setup.plan,
                                                sum(progress.train_seconds)),
        **pretrained.record(weights, variant=model_cfg.variant),
        "head_epochs": setup.head_plan.epochs if setup.head_plan else 0,
        "head_learning_rate": setup.head_plan.learning_rate if setup.head_plan else None,
        "head_seconds": round(head_seconds, 2),
    }
    if chief:
        run.write_json(run.train_result, result)
    return result


@dataclasses.dataclass(frozen=True)
class _Setup:
    """What `train` decides before it builds anything: precision, strategy, plans, XLA."""

    precision: distribute.Precision
    strategy: tf.distribute.Strategy
    plan: TrainingPlan
    head_plan: TrainingPlan | None
    jit: bool

    @classmethod
    def decide(cls, train_cfg, dataset):
        precision = distribute.choose_precision(train_cfg.mixed_precision)
        strategy = distribute.strategy_for(train_cfg)
        replicas = strategy.num_replicas_in_sync
        return cls(precision=precision, strategy=strategy,
                   plan=TrainingPlan.for_training(train_cfg, dataset, replicas=replicas),
                   head_plan=TrainingPlan.for_head(train_cfg, dataset, replicas=replicas),
                   jit=distribute.resolve_switch(train_cfg.xla))

    def log(self, model_cfg, dataset):
        plan = self.plan
        logger.info("  %s on %s: %d train / %d %s images, %d replica(s) (%s), global batch %d, "
                    "lr %g, %d epochs x %d steps, precision %s (%s), %s, XLA %s", model_cfg.name,
                    dataset.name, dataset.num_train, dataset.num_val or dataset.num_test,
                    _held_out(dataset), plan.replicas, distribute.strategy_name(self.strategy),
                    plan.global_batch, plan.learning_rate, plan.epochs, plan.steps_per_epoch,
                    self.precision.policy, self.precision.reason, ONEDNN.describe(),
                    "on" if self.jit else "off")

    def plan_record(self):
        """The plan, precision and oneDNN fields of `train_result.json`."""
        plan = self.plan
        return {"epochs": plan.epochs, "steps_per_epoch": plan.steps_per_epoch,
                "global_batch": plan.global_batch, "replicas": plan.replicas,
                "learning_rate": plan.learning_rate, "precision": self.precision.to_dict(),
                "onednn": ONEDNN.to_dict()}


def _built_model(model_cfg, train_cfg, dataset, setup):
    """`training_model` under the run's strategy and precision; logs the weights loaded."""
    with setup.strategy.scope():
        model, weights = training_model(model_cfg, weight_decay=train_cfg.weight_decay,
                                        num_classes=dataset.num_classes,
                                        image_shape=dataset.image_shape,
                                        policy=setup.precision.policy)
    if weights:
        logger.info("  %s", weights.describe())
    return model, weights


def train_head(model, *, train_cfg, run, dataset, plan, strategy, inputs, jit_compile):
    """Fine-tuning's head phase: trains only the new top, then saves `run.head_model`.

    A run that already has `run.head_model` loads it and skips the phase, so a
    resumed run never trains the head twice; a phase killed midway starts
    over (it is short, and has no backup of its own).

    Args:
        model: the built, uncompiled model with its pretrained weights.
        train_cfg: the job's `train` section.
        run: the `rundir.RunDir`.
        dataset: a `datasets.Dataset`.
        plan: the head phase's `TrainingPlan` (`TrainingPlan.for_head`).
        strategy: the `tf.distribute` strategy the model was built under.
        inputs: (training, held-out) pipelines from `fit_inputs`.
        jit_compile: bool.

    Returns:
        float, seconds spent training the head (0 when skipped).

    Raises:
        TrainingDiverged: the loss or a weight became NaN or inf; nothing is saved.
        ValueError: `run.head_model` is truncated, corrupt or unsafe (`rundir.model_files`).
        training.distribute.WorkerLost: a worker of the multi-worker job was lost.
    """
    if os.path.exists(run.head_model):
        # Through the one safe loader: a truncated or unsafe file is named, not opened.
        model.set_weights(model_files.load_model(run.head_model, compile=False).get_weights())
        logger.info("  head phase already done (%s loaded), skipped",
                    run.relative(run.head_model))
        return 0.0
    logger.info("  head phase: only %s trains, the backbone frozen; %s", pretrained.TOP,
                plan.describe())
    train_ds, held_out_ds = inputs
    guard = NaNGuard()
    start = time.time()
    lost = distribute.stops_when_a_worker_is_lost(strategy, resume=run.root)
    with frozen_backbone(model), lost:
        with strategy.scope():
            compile_for_plan(model, train_cfg, num_classes=dataset.num_classes, plan=plan,
                             jit_compile=jit_compile)
        model.fit(train_ds, epochs=plan.epochs, steps_per_epoch=plan.steps_per_epoch,
                  validation_data=held_out_ds,
                  callbacks=[guard, StageProgress(plan.epochs, held_out=_held_out(dataset),
                                                  label="head epoch")],
                  verbose=train_cfg.verbose if train_cfg.verbose != 2 else 0)
        if not guard.weights_finite(batch=plan.steps_per_epoch - 1):
            epoch, step = guard.diverged_at
            raise TrainingDiverged(
                f"Training diverged in the head phase at epoch {epoch}, step {step}: "
                f"{guard.reason}; training stopped, nothing saved. Lower "
                f"--train.head_learning_rate (now {plan.learning_rate:g} for the global batch).")
        distribute.save_on_every_worker(model, run.head_model, strategy=strategy)
    return time.time() - start


@contextlib.contextmanager
def frozen_backbone(model):
    """Freezes every layer but `predictions` for the block, then restores the flags.

    In tf_keras a BatchNormalization with `trainable=False` runs in inference
    mode, so the backbone's moving statistics stay those of the pretrained
    weights too, as the Keras transfer-learning guide requires. Compile inside
    the block: a change of `trainable` takes effect at `compile`.
    """
    flags = {layer.name: layer.trainable for layer in model.layers}
    for layer in model.layers:
        layer.trainable = layer.name == pretrained.TOP
    try:
        yield model
    finally:
        for layer in model.layers:
            layer.trainable = flags[layer.name]


def _fit(model, run, dataset, *, setup, train_cfg, inputs):
    """Compiles on the plan and fits with the run's callbacks.

    Returns:
        (history, seconds in `fit`, the `StageProgress` that timed its epochs).

    Raises:
        TrainingDiverged: the NaN guard stopped training.
        training.distribute.WorkerLost: a worker of the multi-worker job was lost.
    """
    plan = setup.plan
    with setup.strategy.scope():
        compile_for_plan(model, train_cfg, num_classes=dataset.num_classes, plan=plan,
                         jit_compile=setup.jit)
    guard = NaNGuard()
    # The history is the chief's; every worker backs up, saves and logs to TensorBoard,
    # the others into scratch folders that tf_keras and `worker_path` remove.
    chief = distribute.writes_run_files(setup.strategy)
    backup = NaNSafeBackupAndRestore(run.backup, guard=guard,
                                     steps_per_epoch=plan.steps_per_epoch,
                                     history=run.history if chief else None,
                                     save_freq=train_cfg.save_every_steps,
                                     delete_checkpoint=False)
    progress = StageProgress(plan.epochs, held_out=_held_out(dataset))
    callbacks = [
        guard,
        backup,
        *([keras.callbacks.CSVLogger(run.history, append=True)] if chief else []),
        keras.callbacks.TensorBoard(run.logs, profile_batch=0),
        RunCheckpoints(run, guard=guard, keep_best=bool(dataset.num_val)),
        progress,
        EpochEndBackup(backup),
    ]
    train_ds, held_out_ds = inputs
    start = time.time()
    with distribute.stops_when_a_worker_is_lost(setup.strategy, resume=run.root):
        history = model.fit(train_ds, epochs=plan.epochs, steps_per_epoch=plan.steps_per_epoch,
                            validation_data=held_out_ds, callbacks=callbacks,
                            verbose=train_cfg.verbose if train_cfg.verbose != 2 else 0)
    seconds = time.time() - start
    if guard.diverged_at:
        raise _diverged(guard, run, train_cfg)
    if not history.history.get("loss"):
        logger.info("  training was already complete (%s); evaluating %s", run.relative(
            run.backup), run.relative(run.last_model))
    return history, seconds, progress


def _diverged(guard, run, train_cfg):
    """The `TrainingDiverged` that says where, why, what was kept and what to change."""
    epoch, step = guard.diverged_at
    kept = ("The last good weights are in " + (f"{run.last_model} and " if os.path.exists(
        run.last_model) else "") + f"{run.backup}."
            # BackupAndRestore keeps its checkpoint in a subfolder ("chief").
            if tf.io.gfile.glob(os.path.join(run.backup, "*", "checkpoint"))
            else "No checkpoint had been saved yet.")
    return TrainingDiverged(
        f"Training diverged at epoch {epoch}, step {step}: {guard.reason}; training "
        f"stopped. {kept} Lower the learning rate (--train.learning_rate, now "
        f"{train_cfg.learning_rate}) or add warmup (--train.warmup_epochs 1).")


def _test_metrics_of_last_model(run, dataset, *, setup, train_cfg):
    """`last.keras` re-evaluated on the test split: what the later stages start from."""
    last = model_files.load_model(run.last_model)
    compile_model(last, optimizer="sgd", num_classes=dataset.num_classes,
                  label_smoothing=train_cfg.label_smoothing, jit_compile=False)
    _, test_ds = fit_inputs(dataset, batch_size=setup.plan.global_batch,
                            label_smoothing=train_cfg.label_smoothing, seed=train_cfg.seed,
                            augment=False)
    return last.evaluate(test_ds, verbose=0, return_dict=True)


def _images_per_second(history, plan, seconds):
    """Training throughput of this invocation over its training `seconds`; None without a step."""
    steps_run = len(history.history.get("loss", [])) * plan.steps_per_epoch
    return round(steps_run * plan.global_batch / seconds, 1) if steps_run else None


def _held_out(dataset):
    """What `fit`'s validation data is, in words for the progress lines."""
    return "val" if dataset.num_val else "test"


# ---- what every training loop shares: its inputs, model and compilation ----

def fit_inputs(dataset, *, batch_size, label_smoothing, seed, augment, val=False):
    """Training and evaluation tf.data pipelines, one-hot labels for label smoothing.

    With `val` and a dataset that has a validation split, the evaluation
    pipeline is that split; otherwise it is the test split.
    """
    train = dataset.train(batch_size, shuffle=True, augment=augment, seed=seed, repeat=True)
    held_out = dataset.val(batch_size) if val and dataset.num_val else dataset.test(batch_size)
    if label_smoothing:
        one_hot = lambda x, y: (x, tf.one_hot(y, dataset.num_classes))
        train, held_out = train.map(one_hot), held_out.map(one_hot)
    return train, held_out


def training_model(model_cfg, *, weight_decay, num_classes, image_shape, policy="float32"):
    """The float model of the job's `model` section and what was loaded into it.

    Weight decay is an L2 penalty on kernels. With `model.weights` the model is
    built in the variant the weights need and loaded from them; a top that does
    not fit `num_classes` stays new (`training.pretrained`). The model computes
    in the Keras dtype `policy` (`training.distribute.choose_precision`).

    Args:
        model_cfg: the job's `model` section (`job.config.ModelConfig`).
        weight_decay: float, the SGD weight decay on kernels (0: none).
        num_classes: int.
        image_shape: (height, width, 3).
        policy: str, the Keras dtype policy.

    Returns:
        (model, `training.pretrained.PretrainedWeights` or None without weights).

    Raises:
        FileNotFoundError, ValueError: the weights file is missing, unreadable
            or does not fit; the variant conflicts with the weights.
    """
    cfg = model_cfg
    weights = pretrained.resolve(cfg, num_classes=num_classes)
    wd = weight_decay
    with distribute.dtype_policy(policy):
        model = build_model(
            cfg.name, variant=weights.variant if weights else cfg.variant,
            shortcut=cfg.shortcut, classes=num_classes, input_shape=image_shape,
            bn_momentum=cfg.bn_momentum, zero_init_last_bn=cfg.zero_init_last_bn,
            # SGD weight decay wd adds wd * w to the gradient: an L2 loss of wd / 2 * |w|^2.
            kernel_regularizer=keras.regularizers.L2(wd / 2) if wd > 0 else None)
    if weights:
        weights = pretrained.load(model, weights)
    return model, weights


def build_training_model(model_cfg, *, weight_decay, num_classes, image_shape,
                         policy="float32"):
    """The model of `training_model`, pretrained weights loaded, without their record."""
    return training_model(model_cfg, weight_decay=weight_decay, num_classes=num_classes,
                          image_shape=image_shape, policy=policy)[0]


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


def compile_for_plan(model, train_cfg, *, num_classes, plan, jit_compile):
    """Compiles `model` with SGD + momentum on `plan`'s schedule, the run's loss and metrics.

    Every training loop (float training, its head phase, QAT, the degradation
    experiment) compiles through here.

    Args:
        model: the model to compile (inside its strategy's scope).
        train_cfg: the job's `train` section (`momentum`, `label_smoothing`).
        num_classes: int.
        plan: the loop's `TrainingPlan`.
        jit_compile: bool.
    """
    optimizer = keras.optimizers.SGD(plan.learning_rate_schedule(), momentum=train_cfg.momentum)
    compile_model(model, optimizer=optimizer, num_classes=num_classes,
                  label_smoothing=train_cfg.label_smoothing, jit_compile=jit_compile)


def compiled_training_model(model_cfg, train_cfg, *, dataset, plan, jit_compile,
                            policy="float32"):
    """`build_training_model` compiled with SGD + momentum on `plan`'s schedule."""
    model = build_training_model(model_cfg, weight_decay=train_cfg.weight_decay,
                                 num_classes=dataset.num_classes,
                                 image_shape=dataset.image_shape, policy=policy)
    compile_for_plan(model, train_cfg, num_classes=dataset.num_classes, plan=plan,
                     jit_compile=jit_compile)
    return model
