"""The noise of an accuracy measured on a finite test set, and when a difference is within it.

One home for the statistics the report's decision (report/decide.py) and the
degradation experiment (experiments/degradation.py) judge by; no TensorFlow.
Today: the binomial standard error of one proportion and the two-standard-error
rule.

    >>> standard_error_points(0.5, 100)
    5.0
    >>> within_noise(-3.0, standard_error_points(0.5, 100))
    True
"""

import math

# A difference within this many standard errors is what another draw of the
# test images could give.
NOISE_STANDARD_ERRORS = 2


def standard_error_points(p, n):
    """The binomial standard error, in percentage points, of a proportion `p` measured on `n` items.

    Args:
        p: float, the proportion as a fraction in [0, 1] (a top-1, an error rate).
        n: int, the number of items it was measured on; positive.

    Returns:
        float, `100 * sqrt(p (1 - p) / n)`.

    Raises:
        ValueError: `n` below 1.
    """
    if n < 1:
        raise ValueError(f"n must be a positive count of items, got {n!r}.")
    return 100.0 * math.sqrt(max(p * (1.0 - p), 0.0) / n)


def within_noise(difference_points, standard_error):
    """Whether a difference lies within `NOISE_STANDARD_ERRORS` standard errors of 0.

    Args:
        difference_points: float, the difference in percentage points.
        standard_error: float, its standard error in points, e.g. from
            `standard_error_points`.

    Returns:
        bool, `|difference_points| <= 2 * standard_error`.
    """
    return abs(difference_points) <= NOISE_STANDARD_ERRORS * standard_error
