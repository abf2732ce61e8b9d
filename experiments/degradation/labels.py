"""The label of one net of the degradation experiment, `resnet56@seed1@float32`, and its precision.

A label is a registry name with optional tags; it keys the net in curves.json,
config.json and summary.json, and the tags say how it trained differently from
the experiment's first net (arXiv 1512.03385, sec. 4.2, trains every net alike).
"""

import dataclasses
import re

# What a label's `@float32` tag sets `train.mixed_precision` to; without the tag the preset's
# setting stays, which picks bfloat16 on a CPU that computes it natively.
MIXED_PRECISION_FOR_FLOAT32 = "off"


@dataclasses.dataclass(frozen=True)
class NetLabel:
    """One net trained once: `resnet56`, `resnet56@seed1`, `resnet56@seed1@float32`.

    Attributes:
        label: the `--models` entry, the net's key in curves.json.
        model: the registry name.
        seed: the `@seedN` tag, or the experiment's seed.
        precision: `float32` with the `@float32` tag, else `auto` (the preset's
            `train.mixed_precision`); curves.json keeps it as `precision_setting`.
    """

    label: str
    model: str
    seed: int
    precision: str

    @classmethod
    def parse(cls, label, *, seed):
        """The label's model and tags.

        Args:
            label: str, e.g. `plain20@float32@seed12`.
            seed: int, the experiment's seed, for a label without `@seedN`.

        Returns:
            A `NetLabel`.

        Raises:
            ValueError: a tag other than `@seedN` and `@float32`.
        """
        model, *tags = label.split("@")
        net_seed, precision = seed, "auto"
        for tag in tags:
            if re.fullmatch(r"seed\d+", tag):
                net_seed = int(tag[4:])
            elif tag == "float32":
                precision = "float32"
            else:
                raise ValueError(f"--models entry {label!r} has an unknown tag @{tag}; the tags "
                                 f"are @seedN and @float32 (e.g. resnet56@seed1@float32).")
        return cls(label=label, model=model, seed=net_seed, precision=precision)


def precision_name(curve, *, precision):
    """The arithmetic a net trained in: `float32`, `bfloat16`, `float16`, or None if unknown.

    Args:
        curve: the net's entry of curves.json; its `precision` (the Keras
            policy chosen, recorded since bfloat16 runs began) decides.
        precision: the label's setting, `auto` or `float32`: a net without a
            recorded policy trained in float32 only if it was tagged so.

    Returns:
        str, or None for an `auto` net of a run that did not record its policy.
    """
    policy = (curve.get("precision") or {}).get("policy")
    if policy:
        # Keras names a mixed policy after its compute type: mixed_bfloat16 computes in bfloat16.
        return policy.removeprefix("mixed_")
    return "float32" if precision == "float32" else None


def precision_order(name):
    """Sort key of `precision_name`s: float32 first, the precision the paper trained in."""
    return (name != "float32", name is None, name or "")
