"""The training stage's closed sets, with no TensorFlow: schedules, warmups, precision, scale-out.

The modules that act on them (`training.plan`, `training.distribute`) refuse
any other value with a `ValueError` that lists the valid ones (`check`); the
job's configuration (`job.config`) takes its choices from here, as it takes
export's from `export.variants`.
"""

import typing
from typing import Literal

# The learning-rate schedules of `training.plan.TrainingPlan`: cosine decay (Loshchilov &
# Hutter, arXiv 1608.03983), the paper's step decay (arXiv 1512.03385, sec. 3.4 and 4.2),
# or none.
Schedule = Literal["cosine", "step", "constant"]
# How the rate warms up: rising linearly from a tenth to the peak (Goyal et al., arXiv
# 1706.02677), or held at a tenth (the paper's ResNet-110, sec. 4.2; step schedule only).
WarmupShape = Literal["linear", "constant"]
# `train.mixed_precision` (`training.distribute.choose_precision`): 16-bit where the
# hardware computes it natively (auto), 16-bit anyway (on), float32 (off), or one 16-bit type.
PrecisionSetting = Literal["auto", "on", "off", "float16", "bfloat16"]
# `train.distribute` (`training.distribute.select_strategy`): the tf.distribute strategy.
Distribute = Literal["auto", "none", "mirrored", "multi_worker", "tpu"]
# `train.xla` (`training.distribute.resolve_switch`): auto is on with a GPU.
Switch = Literal["auto", "on", "off"]

SCHEDULES: tuple[str, ...] = typing.get_args(Schedule)
WARMUP_SHAPES: tuple[str, ...] = typing.get_args(WarmupShape)
PRECISION_SETTINGS: tuple[str, ...] = typing.get_args(PrecisionSetting)
DISTRIBUTIONS: tuple[str, ...] = typing.get_args(Distribute)
SWITCHES: tuple[str, ...] = typing.get_args(Switch)


def check(value, valid, *, what):
    """`value` if it is one of `valid`, else a ValueError that names it and lists `valid`.

    Args:
        value: the value given.
        valid: tuple of str, one of the sets above.
        what: str, what `value` is, for the message: "schedule".

    Returns:
        `value`.

    Raises:
        ValueError: `value` is not in `valid`, e.g. "Unknown schedule 'linear';
            valid: cosine, step, constant."
    """
    if value not in valid:
        raise ValueError(f"Unknown {what} {value!r}; valid: {', '.join(valid)}.")
    return value


def check_schedule(schedule, *, lr_decay_epochs, warmup_epochs, warmup_steps, warmup_shape):
    """Refuses a schedule whose parts do not fit together, naming the `train.*` keys.

    The step schedule's decays are epochs > 0, in order (a preset's may lie past
    a short run); the warmup has one length, and a shape its schedule has. That
    the schedule and the shape are known is each caller's own check
    (`training.plan.TrainingPlan`, `job.config`'s closed sets).

    Raises:
        ValueError: decays out of order, two warmup lengths, or a held warmup
            outside `step`.
    """
    if any(e <= 0 for e in lr_decay_epochs) or list(lr_decay_epochs) != sorted(
            set(lr_decay_epochs)):
        raise ValueError(f"train.lr_decay_epochs={','.join(f'{e:g}' for e in lr_decay_epochs)} "
                         f"must be increasing epochs > 0.")
    if warmup_epochs and warmup_steps:
        raise ValueError(f"train.warmup_epochs={warmup_epochs:g} and train.warmup_steps="
                         f"{warmup_steps} both give the warmup's length; set one of them to 0.")
    if warmup_shape == "constant" and schedule != "step":
        raise ValueError(f"train.warmup_shape=constant holds a tenth of the rate only with "
                         f"train.schedule=step; the {schedule} schedule warms up linearly "
                         f"(train.warmup_shape=linear).")
