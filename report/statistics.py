"""Paired statistics of two classifiers scored on the same images: the one home of the noise rule.

The report's decision (report/decide.py) and the degradation experiment
(experiments/degradation/verdict.py) compare models measured on the *same* test
images, so each image is a pair of outcomes and the images both models get
right (or both wrong) say nothing about which is better. All the information
is in the discordant images, and the statistics here are paired:

- the exact McNemar test: a two-sided binomial test, at 1/2, of the images
  only one model gets right (McNemar, Psychometrika 12:153-157, 1947);
- a confidence interval for the difference of the two accuracies by
  Newcombe's hybrid score method for paired proportions, method 10 of
  R. G. Newcombe, "Improved confidence intervals for the difference between
  binomial proportions based on paired data", Statistics in Medicine
  17:2635-2650 (1998): Wilson score intervals of the two accuracies, combined
  "square-and-add" with their estimated correlation. It is closed-form, stays
  inside [-1, 1], and is among the intervals Fagerland, Lydersen and Laake
  recommend for paired proportions (Statistics in Medicine 33:2850-2875, 2014).

Unpaired, for counts of two separate groups (how many nets of each precision
saw their training loss jump), there is Fisher's exact test, by scipy.

A difference is *within the noise* when its interval contains 0. No
TensorFlow; counts are computed with numpy, the exact test by scipy; the
Wilson interval is written here in closed form, to take fractional counts, and
checked against scipy's, as is Newcombe's combination of two of them (no
installable library has the paired interval).

    >>> counts = paired_counts(reference_correct, variant_correct)
    >>> paired_difference(counts, confidence=0.95)["interval_points"]
    [-0.15, 0.03]
"""

import math

import numpy as np
import scipy.stats

DEFAULT_CONFIDENCE = 0.95
INTERVAL_METHOD = "Newcombe 1998 method 10, the hybrid score interval for paired proportions"
TEST_METHOD = "the exact McNemar test, a two-sided binomial test of the discordant images at 1/2"
_COUNTS = ("both_right", "reference_only", "variant_only", "both_wrong")
# Budgets are compared with measured points; this absorbs float rounding of k / n.
POINTS_TOLERANCE = 1e-9


# ---------------------------------------------------------------- counting


def _flags(values, name):
    flags = np.asarray(values).reshape(-1)
    if flags.dtype != bool and not np.isin(flags, (0, 1)).all():
        raise ValueError(f"{name} must hold one right/wrong flag (bool or 0/1) per image.")
    return flags.astype(bool)


def paired_counts(reference_correct, variant_correct):
    """The 2x2 table of two models' right and wrong answers on the same images.

    Args:
        reference_correct: `(N,)` bools (or 0/1), whether the reference model
            got each image right.
        variant_correct: `(N,)` bools, the same for the model compared with it.

    Returns:
        dict of ints: `both_right`, `reference_only` (the reference right and
        the variant wrong), `variant_only` (the reverse), `both_wrong`.

    Raises:
        ValueError: the two differ in length, or hold values other than flags.
    """
    ref = _flags(reference_correct, "reference_correct")
    var = _flags(variant_correct, "variant_correct")
    if ref.shape != var.shape:
        raise ValueError(f"Got {len(ref)} reference flags but {len(var)} variant flags; both "
                         f"models must be scored on the same images.")
    return {"both_right": int(np.sum(ref & var)), "reference_only": int(np.sum(ref & ~var)),
            "variant_only": int(np.sum(~ref & var)), "both_wrong": int(np.sum(~ref & ~var))}


def per_class(labels, reference_predictions, variant_predictions, *, num_classes):
    """Each class's recall for the variant, its change against the reference, and the 2x2 table.

    Args:
        labels: `(N,)` int true classes.
        reference_predictions: `(N,)` int top-1 classes of the reference.
        variant_predictions: `(N,)` int top-1 classes of the variant.
        num_classes: int, the classes to report (0 .. num_classes - 1).

    Returns:
        list, one dict per class: `class`, `count` (test images of that class),
        `recall` (the variant's share of them it gets right; None without
        images), `change_points` (100 x the variant's recall minus the
        reference's; None without images) and the four counts of
        `paired_counts` on that class's images.
    """
    labels = np.asarray(labels).reshape(-1)
    ref = np.asarray(reference_predictions).reshape(-1) == labels
    var = np.asarray(variant_predictions).reshape(-1) == labels
    rows = []
    for k in range(num_classes):
        mine = labels == k
        count = int(mine.sum())
        counts = paired_counts(ref[mine], var[mine])
        rows.append({
            "class": k, "count": count,
            "recall": float(var[mine].mean()) if count else None,
            "change_points": (100.0 * (counts["variant_only"] - counts["reference_only"]) / count
                              if count else None),
            **counts})
    return rows


def confusion_changes(labels, reference_predictions, variant_predictions, *, num_classes,
                      top=5):
    """The off-diagonal confusion counts that changed most from the reference to the variant.

    Args:
        labels, reference_predictions, variant_predictions: `(N,)` ints, as
            `per_class`.
        num_classes: int.
        top: int, how many pairs to keep.

    Returns:
        list of at most `top` dicts, largest absolute change first (ties by
        true, then predicted class): `true`, `predicted` (the class an image
        of `true` was taken for), `reference` and `variant` (how many test
        images each model took so), `change` (variant minus reference). Only
        pairs whose count changed.
    """
    labels = np.asarray(labels).reshape(-1)

    def matrix(predictions):
        m = np.zeros((num_classes, num_classes), np.int64)
        np.add.at(m, (labels, np.asarray(predictions).reshape(-1)), 1)
        return m

    ref, var = matrix(reference_predictions), matrix(variant_predictions)
    change = var - ref
    np.fill_diagonal(change, 0)
    pairs = sorted(zip(*np.nonzero(change)), key=lambda tp: (-abs(change[tp]), tp))
    return [{"true": int(t), "predicted": int(p), "reference": int(ref[t, p]),
             "variant": int(var[t, p]), "change": int(change[t, p])} for t, p in pairs[:top]]


def image_by_image(labels, reference_predictions, predictions, *, num_classes,
                   reference="keras_float"):
    """What report.json keeps of one model compared with its reference on the same images.

    Args:
        labels: `(N,)` int true classes.
        reference_predictions: `(N,)` int top-1 classes of the reference model.
        predictions: `(N,)` int top-1 classes of the model compared.
        num_classes: int.
        reference: str, the reference's variant name, saved with the counts.

    Returns:
        dict: `paired` (`reference` and the counts of `paired_counts`),
        `per_class` (`per_class`) and `confusion_changes` (`confusion_changes`).
    """
    labels = np.asarray(labels).reshape(-1)
    reference_predictions = np.asarray(reference_predictions).reshape(-1)
    predictions = np.asarray(predictions).reshape(-1)
    return {
        "paired": {"reference": reference,
                   **paired_counts(reference_predictions == labels, predictions == labels)},
        "per_class": per_class(labels, reference_predictions, predictions,
                               num_classes=num_classes),
        "confusion_changes": confusion_changes(labels, reference_predictions, predictions,
                                               num_classes=num_classes),
    }


# ---------------------------------------------------------------- the test and the interval


def _check_confidence(confidence):
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be a level in (0, 1), e.g. 0.95; got {confidence!r}.")


def mcnemar_exact_p(reference_only, variant_only):
    """The two-sided exact McNemar p-value of the discordant images.

    Under "both models are equally accurate" each of the `reference_only +
    variant_only` discordant images is equally likely to fall either way, so
    the count is binomial at 1/2: `scipy.stats.binomtest` gives the exact
    two-sided p-value.

    Args:
        reference_only: int, images only the reference gets right.
        variant_only: int, images only the variant gets right.

    Returns:
        float in (0, 1]; 1.0 without discordant images.

    Raises:
        ValueError: a negative count.
    """
    if reference_only < 0 or variant_only < 0:
        raise ValueError(f"discordant counts must be >= 0, got {reference_only!r} and "
                         f"{variant_only!r}.")
    n = reference_only + variant_only
    if n == 0:
        return 1.0
    return float(scipy.stats.binomtest(variant_only, n, 0.5).pvalue)


def fisher_exact_p(hits_a, n_a, hits_b, n_b):
    """The two-sided p-value of Fisher's exact test: do two groups' rates of an event differ?

    For two separate groups, not pairs: `hits_a` of `n_a` against `hits_b` of
    `n_b`, tested by `scipy.stats.fisher_exact` on the 2x2 table.

    Raises:
        ValueError: a count below 0 or above its group's size.
    """
    for hits, n in ((hits_a, n_a), (hits_b, n_b)):
        if not 0 <= hits <= n:
            raise ValueError(f"a group's count must lie in [0, its size]; got {hits!r} of "
                             f"{n!r}.")
    table = [[hits_a, n_a - hits_a], [hits_b, n_b - hits_b]]
    return float(scipy.stats.fisher_exact(table).pvalue)


def wilson_interval(successes, n, *, confidence=DEFAULT_CONFIDENCE):
    """The Wilson score interval of a proportion (Wilson, JASA 22:209-212, 1927).

    In closed form, so that it also takes a share of images that is not a
    whole number (`images_needed` scales counts); on whole numbers it is
    scipy's `binomtest(...).proportion_ci(method="wilson")`, to within 1e-12
    (tests/test_statistics.py).

    Args:
        successes: number, 0 <= successes <= n.
        n: number, at least 1.
        confidence: float in (0, 1).

    Returns:
        (low, high), fractions in [0, 1].

    Raises:
        ValueError: `n` below 1, `successes` outside [0, n], or a confidence
            outside (0, 1).
    """
    _check_confidence(confidence)
    if not n >= 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes!r} of {n!r}.")
    z = float(scipy.stats.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    shrink = 1 + z * z / n
    center = (p + z * z / (2 * n)) / shrink
    half = z / shrink * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # Exact at the ends, where the formula's rounding would leave 1e-16 of a gap.
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return low, high


def newcombe_interval(counts, *, confidence=DEFAULT_CONFIDENCE):
    """Newcombe's (1998) method 10 interval for the paired difference variant - reference.

    With a = both right, b = only the variant right, c = only the reference
    right, d = both wrong and n = a + b + c + d, the accuracies are
    p1 = (a + b) / n (variant) and p2 = (a + c) / n (reference), with Wilson
    intervals (l1, u1) and (l2, u2). Their correlation is estimated by
    phi = C / sqrt((a + b)(c + d)(a + c)(b + d)), where C = ad - bc - n/2 when
    ad - bc > n/2, 0 when 0 <= ad - bc <= n/2, and ad - bc when it is
    negative (phi = 0 when a margin is empty). Then, for D = p1 - p2,

        L = D - sqrt((p1 - l1)^2 - 2 phi (p1 - l1)(u2 - p2) + (u2 - p2)^2)
        U = D + sqrt((u1 - p1)^2 - 2 phi (u1 - p1)(p2 - l2) + (p2 - l2)^2).

    Args:
        counts: dict as `paired_counts`.
        confidence: float in (0, 1).

    Returns:
        (low, high) as fractions, or None without images.

    Raises:
        ValueError: a negative count or a confidence outside (0, 1).
    """
    _check_confidence(confidence)
    a, c, b, d = (counts[key] for key in _COUNTS)
    if min(a, b, c, d) < 0:
        raise ValueError(f"counts must be >= 0, got {counts!r}.")
    n = a + b + c + d
    if n <= 0:
        return None
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_interval(a + b, n, confidence=confidence)
    l2, u2 = wilson_interval(a + c, n, confidence=confidence)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    cross = a * d - b * c
    if margins == 0 or 0 <= cross <= n / 2:
        phi = 0.0
    else:
        phi = (cross - n / 2 if cross > 0 else cross) / math.sqrt(margins)
    difference = p1 - p2
    low = difference - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2)
                                     + (u2 - p2) ** 2))
    high = difference + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2)
                                      + (p2 - l2) ** 2))
    return max(-1.0, low), min(1.0, high)


def paired_difference(counts, *, confidence=DEFAULT_CONFIDENCE):
    """Everything the report says about one paired comparison, in points.

    Args:
        counts: dict as `paired_counts` (the variant against its reference).
        confidence: float in (0, 1), the interval's level.

    Returns:
        None without images; else a dict: `n`, `reference_only`,
        `variant_only`, `difference_points` (100 x (variant - reference)
        accuracy), `interval_points` ([low, high], `newcombe_interval` x 100),
        `p_value` (`mcnemar_exact_p`) and `within_noise` (the interval
        contains 0).
    """
    interval = newcombe_interval(counts, confidence=confidence)
    if interval is None:
        return None
    n = sum(counts[key] for key in _COUNTS)
    low, high = (100.0 * x for x in interval)
    return {"n": n, "reference_only": counts["reference_only"],
            "variant_only": counts["variant_only"],
            "difference_points": 100.0 * (counts["variant_only"] - counts["reference_only"]) / n,
            "interval_points": [low, high],
            "p_value": mcnemar_exact_p(counts["reference_only"], counts["variant_only"]),
            "within_noise": low <= 0.0 <= high}


# ---------------------------------------------------------------- planning


def scaled_counts(counts, n):
    """`counts` at `n` images in the same shares; not whole numbers in general.

    Args:
        counts: dict as `paired_counts`, of at least one image.
        n: number >= 1, the number of images to scale to.

    Returns:
        dict with the keys of `paired_counts`, summing to `n`.
    """
    total = sum(counts[key] for key in _COUNTS)
    return {key: counts[key] * n / total for key in _COUNTS}


def images_needed(counts, *, budget_points, confidence=DEFAULT_CONFIDENCE, limit=10_000_000):
    """The fewest test images on which the interval's worst end would fit the budget.

    The images are assumed to disagree as the measured ones did (`scaled_counts`),
    so the difference stays and only the interval narrows: it answers "how many
    test images would decide it", not "what would more images show".

    Args:
        counts: dict as `paired_counts` (the variant against its reference).
        budget_points: float >= 0, the top-1 points the variant may lose.
        confidence: float in (0, 1), the interval's level.
        limit: int, the most images searched.

    Returns:
        int, the number of images (the measured count when it already fits);
        None when the measured difference itself loses more than the budget,
        so that no number of images would fit it, or when over `limit`.
    """
    def fits(n):
        low, _ = newcombe_interval(scaled_counts(counts, n), confidence=confidence)
        return 100.0 * low >= -budget_points - POINTS_TOLERANCE

    measured = sum(counts[key] for key in _COUNTS)
    if fits(measured):
        return measured
    difference = 100.0 * (counts["variant_only"] - counts["reference_only"]) / measured
    if difference <= -budget_points + POINTS_TOLERANCE:
        return None
    low, high = measured, 2 * measured  # fits(low) is False; find a high that fits
    while not fits(high):
        if high > limit:
            return None
        low, high = high, 2 * high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle, high)
    return high
