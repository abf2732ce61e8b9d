"""Constructed report inputs: each model's top-1 class per test image, made into report.json fields.

The report stage measures these fields from real predictions (report/run.py
through `report.statistics.image_by_image`); the tests of report/ build them
the same way from predictions made up to say what the test needs, without
TensorFlow: 360 test images of 10 classes, 36 each, image `i` of class `i % 10`.
"""

import numpy as np

from report import statistics

NUM_TEST, NUM_CLASSES = 360, 10


def labels(num_test=NUM_TEST, num_classes=NUM_CLASSES):
    """The true class of each test image: 0, 1, ..., 9, 0, 1, ..."""
    return np.arange(num_test) % num_classes


def predictions(truth, *, wrong=(), taken_for=None, like=None, num_classes=NUM_CLASSES):
    """Top-1 classes: `like` (default: every image right) with the images `wrong` answered wrong.

    A wrong image is taken for `taken_for`, else for the next class.
    """
    top1 = np.array(truth if like is None else like)
    wrong = np.asarray(list(wrong), dtype=int)
    top1[wrong] = (truth[wrong] + 1) % num_classes if taken_for is None else taken_for
    return top1


def of_class(k, count, *, start=0, num_classes=NUM_CLASSES):
    """`count` test images of class `k`, from its `start`-th on."""
    return [k + num_classes * (start + i) for i in range(count)]


def measure(report, truth, top1_classes):
    """Sets every variant's accuracy fields and image-by-image results from its top-1 classes.

    Args:
        report: a report dict; each variant in it needs an entry in `top1_classes`.
        truth: `labels()`.
        top1_classes: {variant: its top-1 class per image}; `keras_float` is the reference.

    Returns:
        The report, changed in place: `num_test`, `num_classes`, `class_names`,
        and per variant `top1`, `top1_delta_points`, `agreement`, `paired`,
        `per_class`, `confusion_changes`.
    """
    ref = top1_classes["keras_float"]
    float_top1 = float(np.mean(ref == truth))
    for entry in report["variants"]:
        top1 = top1_classes[entry["variant"]]
        accuracy = float(np.mean(top1 == truth))
        entry.update(top1=accuracy, top1_delta_points=round(100 * (accuracy - float_top1), 4),
                     agreement=float(np.mean(top1 == ref)),
                     **statistics.image_by_image(truth, ref, top1, num_classes=NUM_CLASSES))
    report.update(num_test=len(truth), num_classes=NUM_CLASSES,
                  class_names=[str(k) for k in range(NUM_CLASSES)])
    return report


def counts(truth, reference, compared, *, name):
    """A 2x2 table as report.json's `qat.against_int8` holds it."""
    return {"reference": name, **statistics.paired_counts(reference == truth, compared == truth)}


def decided(report, **settings):
    """`report` with its `decision` made, as the report stage saves it before rendering."""
    from report.decide import decide
    return {**report, "decision": decide(report, **settings)}
