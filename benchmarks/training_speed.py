"""`python -m benchmarks`' training rows: our train.py step against what a Keras user would train.

Ours in float32 and in mixed_bfloat16, ours bare (the same network compiled as
the reference is) and the reference, one synthetic in-memory batch, timed in
turns in one process (`benchmarks.timing.training_throughput`).
"""

import gc

from benchmarks.models import (
    bare_training_model,
    hand_built_resnet20,
    keras_applications_resnet50,
    our_training_model,
)
from benchmarks.timing import paired_ratio, training_throughput

# {model: (what the reference is, its builder)}.
REFERENCES = {"resnet50": ("keras.applications.ResNet50 + fit", keras_applications_resnet50),
              "resnet20": ("hand-built Keras ResNet-20 + fit", hand_built_resnet20)}
# The ratios of a row, {key: (numerator, denominator)}: columns of one row, taken round by round.
RATIOS = {"ratio": ("ours", "reference"), "bare_ratio": ("ours_bare", "reference"),
          "bf16_ratio": ("ours_bf16", "reference"), "bf16_speedup": ("ours_bf16", "ours")}


def row_ratios(rates) -> dict:
    """`RATIOS` of one row's `rates` ({column: `throughput`}), each a `paired_ratio`."""
    return {key: paired_ratio(rates[over], rates[under]) for key, (over, under) in RATIOS.items()}


def training_row(name, *, image_size, classes, batch_size, steps, repeats) -> dict:
    """One row: images/s of ours, ours in mixed_bfloat16, ours bare and the reference.

    Returns:
        dict: `model`, `image_size`, `batch_size`, per column (`ours`,
        `ours_bf16`, `ours_bare`, `reference`) a `throughput`,
        `reference_name`, `RATIOS`, and `peak_rss_mb` (the process's, while
        ours trained).
    """
    reference_name, reference = REFERENCES[name]
    sizes = {"image_size": image_size, "classes": classes}
    rates, peak_mb = training_throughput(
        {"ours": our_training_model(name, **sizes),
         "ours_bf16": our_training_model(name, **sizes, policy="mixed_bfloat16"),
         "ours_bare": bare_training_model(name, **sizes),
         "reference": reference(**sizes)},
        **sizes, batch_size=batch_size, steps=steps, repeats=repeats)
    gc.collect()
    return {"model": name, "image_size": image_size, "batch_size": batch_size, **rates,
            "reference_name": reference_name, **row_ratios(rates),
            "peak_rss_mb": round(peak_mb["ours"], 1)}
