"""Tests for report/statistics.py: the standard error of a proportion and the two-SE rule."""

import pytest

from report.statistics import NOISE_STANDARD_ERRORS, standard_error_points, within_noise


@pytest.mark.parametrize("p, n, points", [
    (0.5, 100, 5.0),  # sqrt(0.25 / 100) = 0.05
    (0.1, 1000, 100 * (0.09 / 1000) ** 0.5),  # 0.949 points
    (0.975, 360, 0.8229),  # the top-1 of tests/conftest.py's report
    (0.9, 100, 3.0),
    (0.0, 50, 0.0),  # a certain outcome has no spread
    (1.0, 50, 0.0),
])
def test_standard_error_of_a_proportion_in_points(p, n, points):
    assert standard_error_points(p, n) == pytest.approx(points, abs=1e-4)


def test_standard_error_is_symmetric_and_shrinks_as_one_over_root_n():
    assert standard_error_points(0.2, 500) == pytest.approx(standard_error_points(0.8, 500))
    assert standard_error_points(0.3, 400) == pytest.approx(2 * standard_error_points(0.3, 1600))


@pytest.mark.parametrize("n", [0, -5])
def test_standard_error_needs_a_positive_count(n):
    with pytest.raises(ValueError, match=rf"positive count of items, got {n}"):
        standard_error_points(0.5, n)


@pytest.mark.parametrize("difference, standard_error, expected", [
    (0.0, 0.5, True),
    (0.99, 0.5, True),
    (1.0, 0.5, True),  # the bound itself is noise
    (-1.0, 0.5, True),
    (1.01, 0.5, False),
    (-1.01, 0.5, False),
    (0.0, 0.0, True),
    (0.01, 0.0, False),
])
def test_within_noise_is_two_standard_errors_either_way(difference, standard_error, expected):
    assert NOISE_STANDARD_ERRORS == 2
    assert within_noise(difference, standard_error) is expected
