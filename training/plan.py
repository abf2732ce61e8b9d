"""One training plan: global batch, steps, epochs, learning rate and its schedule.

Every training loop (the train stage, QAT fine-tuning, the degradation
experiment) asks a `TrainingPlan` instead of working these out itself. The
learning rate scales linearly with the global batch (Goyal et al., arXiv
1706.02677); the schedules are the paper's step decay (arXiv 1512.03385,
sec. 3.4 and 4.2) and cosine decay (Loshchilov & Hutter, arXiv 1608.03983).
"""

import dataclasses
import math

from resnet_keras.backend import keras, tf
from training.options import SCHEDULES, WARMUP_SHAPES, check, check_schedule


@dataclasses.dataclass(frozen=True)
class TrainingPlan:
    """What one `fit` runs, resolved from a configuration, a dataset and the replicas.

    Attributes:
        replicas: int, replicas in sync.
        global_batch: int, images per step over all replicas.
        steps_per_epoch: int.
        epochs: int, passes `fit` makes (a fractional configured count rounds up).
        learning_rate: float, the peak rate for `global_batch`.
        schedule: one of `training.options.SCHEDULES`: `cosine`, `step` or `constant`.
        lr_decay_epochs: tuple of float, where `step` divides the rate by 10.
        warmup_steps: int, steps the rate warms up for, from a tenth of the peak.
        warmup_shape: `linear`, rising to the peak (Goyal et al.; the only shape
            `cosine` has), or `constant`, held at the tenth (the paper's ResNet-110).

    Raises:
        ValueError: a schedule or warmup shape not in `training.options`, however
            the plan is made.
    """

    replicas: int
    global_batch: int
    steps_per_epoch: int
    epochs: int
    learning_rate: float
    schedule: str = "constant"
    lr_decay_epochs: tuple[float, ...] = ()
    warmup_steps: int = 0
    warmup_shape: str = "linear"

    def __post_init__(self):
        check(self.schedule, SCHEDULES, what="schedule")
        check(self.warmup_shape, WARMUP_SHAPES, what="warmup shape")

    @classmethod
    def build(cls, *, batch_size, replicas, num_train, epochs, learning_rate,
              reference_batch_size, steps_per_epoch=None, schedule="constant",
              lr_decay_epochs=(), warmup_epochs=0.0, warmup_steps=0, warmup_shape="linear",
              dataset_name="the dataset"):
        """Resolves a plan; the one place these numbers are computed.

        Args:
            batch_size: int, per replica.
            replicas: int.
            num_train: int, training images.
            epochs: float.
            learning_rate: float, for a global batch of `reference_batch_size`.
            reference_batch_size: int.
            steps_per_epoch: int, or None for one pass over the training split.
            schedule, lr_decay_epochs, warmup_shape: see the class attributes.
            warmup_epochs: float, the warmup's length in epochs; or
            warmup_steps: int, its length in steps (one of the two is 0).
            dataset_name: str, for the error message.

        Raises:
            ValueError: the global batch is larger than the training split, the
                warmup does not end before the first decay, or the schedule's
                parts do not fit (`training.options.check_schedule`).
        """
        check_schedule(schedule, lr_decay_epochs=tuple(lr_decay_epochs),
                       warmup_epochs=warmup_epochs, warmup_steps=warmup_steps,
                       warmup_shape=warmup_shape)
        global_batch = batch_size * replicas
        if global_batch > num_train:
            raise ValueError(
                f"The global batch ({batch_size} x {replicas} replicas = {global_batch}) is "
                f"larger than the training set ({num_train} images of {dataset_name}). Use a "
                f"batch size of {max(1, num_train // replicas)} or smaller.")
        decays = tuple(lr_decay_epochs) if schedule == "step" else ()
        steps_per_epoch = steps_per_epoch or math.ceil(num_train / global_batch)
        warmup = warmup_steps or int(round(warmup_epochs * steps_per_epoch))
        if decays and warmup >= decays[0] * steps_per_epoch:
            raise ValueError(f"The warmup ({warmup} steps, {warmup / steps_per_epoch:g} epochs) "
                             f"must end before the first learning-rate decay (epoch "
                             f"{decays[0]:g}).")
        return cls(replicas=replicas, global_batch=global_batch, steps_per_epoch=steps_per_epoch,
                   epochs=math.ceil(epochs),
                   learning_rate=learning_rate * global_batch / reference_batch_size,
                   schedule=schedule, lr_decay_epochs=decays, warmup_steps=warmup,
                   warmup_shape=warmup_shape)

    @classmethod
    def for_training(cls, cfg, dataset, *, replicas):
        """The float training plan of the job's `train` section (`job.config.TrainConfig`)."""
        return cls.build(batch_size=cfg.batch_size, replicas=replicas,
                         num_train=dataset.num_train, epochs=cfg.epochs,
                         learning_rate=cfg.learning_rate,
                         reference_batch_size=cfg.reference_batch_size,
                         steps_per_epoch=cfg.steps_per_epoch, schedule=cfg.schedule,
                         lr_decay_epochs=cfg.lr_decay_epochs, warmup_epochs=cfg.warmup_epochs,
                         warmup_steps=cfg.warmup_steps, warmup_shape=cfg.warmup_shape,
                         dataset_name=dataset.name)

    @classmethod
    def for_head(cls, cfg, dataset, *, replicas):
        """The head phase of fine-tuning: only the new top trains, backbone frozen.

        `train.head_epochs` at `train.head_learning_rate` (default: the
        `train.learning_rate`), scaled with the global batch like it, cosine
        decay without warmup; batch and steps per epoch as the main phase.
        Returns None when `train.head_epochs` is 0 (no head phase).

        Args:
            cfg: the job's `train` section (`job.config.TrainConfig`).
        """
        if not cfg.head_epochs:
            return None
        rate = cfg.learning_rate if cfg.head_learning_rate is None else cfg.head_learning_rate
        return cls.build(batch_size=cfg.batch_size, replicas=replicas,
                         num_train=dataset.num_train, epochs=cfg.head_epochs,
                         learning_rate=rate, reference_batch_size=cfg.reference_batch_size,
                         steps_per_epoch=cfg.steps_per_epoch, schedule="cosine",
                         dataset_name=dataset.name)

    @classmethod
    def for_qat(cls, cfg, dataset, *, replicas, reference_batch_size):
        """The QAT fine-tuning plan: the `qat` section, cosine decay, no warmup.

        Args:
            cfg: the job's `qat` section (`job.config.QATConfig`).
            reference_batch_size: int, the float run's `train.reference_batch_size`:
                the rate scales with the global batch against it, like the float rate.
        """
        return cls.build(batch_size=cfg.batch_size, replicas=replicas,
                         num_train=dataset.num_train, epochs=cfg.epochs,
                         learning_rate=cfg.learning_rate,
                         reference_batch_size=reference_batch_size,
                         schedule="cosine", dataset_name=dataset.name)

    @property
    def total_steps(self):
        return self.epochs * self.steps_per_epoch

    def learning_rate_schedule(self):
        """The learning rate as a built-in Keras schedule (serializable with the model).

        `step` divides by 10 at each of `lr_decay_epochs`, after a warmup that
        rises linearly from 1/10 of the rate (`WarmupThenSteps`) or holds it, as
        the paper does for ResNet-110 (sec. 4.2). `cosine` warms up linearly to
        the peak and decays to zero.
        """
        peak = self.learning_rate
        total = max(1, self.total_steps)
        warmup = self.warmup_steps
        if self.schedule == "constant":
            return peak
        if self.schedule == "cosine":
            return keras.optimizers.schedules.CosineDecay(
                initial_learning_rate=peak / 10 if warmup else peak,
                decay_steps=max(1, total - warmup), warmup_target=peak if warmup else None,
                warmup_steps=warmup)
        # `step`, the one schedule left (`__post_init__` refused any other).
        boundaries = [int(round(e * self.steps_per_epoch)) for e in self.lr_decay_epochs]
        values = [peak / 10 ** i for i in range(len(boundaries) + 1)]
        if warmup and self.warmup_shape == "linear":
            return WarmupThenSteps(warmup, boundaries, values)
        if warmup:
            boundaries, values = [warmup] + boundaries, [peak / 10] + values
        if not boundaries:
            return peak
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)

    def describe(self):
        """One line for the stage's progress output."""
        warmup = (f", {self.warmup_shape} warmup {self.warmup_steps} steps"
                  if self.warmup_steps else "")
        return (f"{self.replicas} replica(s), global batch {self.global_batch}, lr "
                f"{self.learning_rate:g} ({self.schedule}{warmup}), {self.epochs} epochs x "
                f"{self.steps_per_epoch} steps")

    def to_dict(self):
        return dataclasses.asdict(self)


@keras.utils.register_keras_serializable(package="resnet_keras")
class WarmupThenSteps(keras.optimizers.schedules.LearningRateSchedule):
    """A rate rising linearly from a tenth of `values[0]` over `warmup_steps`, then stepping.

    Goyal et al.'s gradual warmup (arXiv 1706.02677, sec. 2.2) in front of the
    paper's step decay. Keras has each half (`PolynomialDecay` rises linearly,
    `PiecewiseConstantDecay` steps) but no way to chain two schedules, so this
    class does it. Registered, it saves and loads with the model in safe mode.

    Args:
        warmup_steps: int > 0.
        boundaries: the steps where the rate divides (`PiecewiseConstantDecay`'s).
        values: the rate before the first boundary and after each.
    """

    def __init__(self, warmup_steps, boundaries, values):
        super().__init__()
        self.warmup_steps = warmup_steps
        self.boundaries, self.values = list(boundaries), list(values)
        self._steps = (keras.optimizers.schedules.PiecewiseConstantDecay(self.boundaries,
                                                                         self.values)
                       if self.boundaries else None)

    def __call__(self, step):
        peak = self.values[0]
        after = self._steps(step) if self._steps else tf.constant(peak, tf.float32)
        fraction = tf.cast(step, tf.float32) / float(self.warmup_steps)
        rising = peak / 10 + (peak - peak / 10) * fraction
        return tf.where(fraction < 1.0, tf.cast(rising, after.dtype), after)

    def get_config(self):
        return {"warmup_steps": self.warmup_steps, "boundaries": self.boundaries,
                "values": self.values}
