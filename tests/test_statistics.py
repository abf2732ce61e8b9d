"""Tests for report/statistics.py: paired counts, McNemar's exact test, Newcombe's interval."""

import numpy as np
import pytest
from scipy.stats import binomtest

from report import statistics


def _counts(both_right, reference_only, variant_only, both_wrong):
    return {"both_right": both_right, "reference_only": reference_only,
            "variant_only": variant_only, "both_wrong": both_wrong}


@pytest.mark.parametrize("reference_only, variant_only", [
    (1, 0), (0, 1), (6, 16), (25, 19), (3, 50), (2, 0), (500, 480), (4_000, 3_900)])
def test_mcnemar_exact_p_is_scipys_two_sided_binomial_test(reference_only, variant_only):
    expected = binomtest(variant_only, reference_only + variant_only, 0.5).pvalue
    assert statistics.mcnemar_exact_p(reference_only, variant_only) == pytest.approx(
        expected, rel=1e-9)


def test_mcnemar_without_discordant_images_and_negative_counts():
    assert statistics.mcnemar_exact_p(0, 0) == 1.0
    with pytest.raises(ValueError, match="discordant counts must be >= 0"):
        statistics.mcnemar_exact_p(-1, 3)


def test_wilson_interval_matches_newcombes_worked_example():
    # Newcombe, Statistics in Medicine 17:857-872 (1998), 81 of 263: 0.2553 to 0.3662.
    low, high = statistics.wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    assert statistics.wilson_interval(0, 10)[0] == 0.0
    assert statistics.wilson_interval(10, 10)[1] == 1.0


@pytest.mark.parametrize("n", [1, 2, 10, 37, 263, 360, 10_000])
@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
def test_wilson_interval_is_scipys_on_whole_counts(n, confidence):
    for successes in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        ci = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
        low, high = statistics.wilson_interval(successes, n, confidence=confidence)
        assert low == pytest.approx(ci.low, abs=1e-12) and high == pytest.approx(ci.high, abs=1e-12)


def _brute_force_images_needed(counts, budget_points, confidence):
    n = sum(counts.values())
    while True:
        low, _ = statistics.newcombe_interval(statistics.scaled_counts(counts, n),
                                              confidence=confidence)
        if 100 * low >= -budget_points - 1e-9:
            return n
        n += 1


@pytest.mark.parametrize("counts, budget_points, confidence", [
    ({"both_right": 360, "reference_only": 0, "variant_only": 0, "both_wrong": 0}, 1.0, 0.95),
    ({"both_right": 340, "reference_only": 3, "variant_only": 1, "both_wrong": 16}, 1.0, 0.95),
    ({"both_right": 340, "reference_only": 5, "variant_only": 1, "both_wrong": 14}, 2.0, 0.9),
    ({"both_right": 900, "reference_only": 9, "variant_only": 1, "both_wrong": 90}, 1.0, 0.95),
    ({"both_right": 50, "reference_only": 2, "variant_only": 2, "both_wrong": 6}, 0.5, 0.99),
])
def test_images_needed_is_the_fewest_a_brute_force_search_finds(counts, budget_points,
                                                                confidence):
    needed = statistics.images_needed(counts, budget_points=budget_points,
                                      confidence=confidence)
    assert needed == _brute_force_images_needed(counts, budget_points, confidence)
    assert needed > sum(counts.values())  # none of these fits on the images measured


def test_images_needed_where_no_number_of_images_would_do():
    # 2 points lost on the images measured: more images only narrow the interval around it.
    losing = {"both_right": 90, "reference_only": 3, "variant_only": 1, "both_wrong": 6}
    assert statistics.images_needed(losing, budget_points=1.0) is None
    # Already within: the images measured are enough.
    fits = {"both_right": 9900, "reference_only": 0, "variant_only": 0, "both_wrong": 100}
    assert statistics.images_needed(fits, budget_points=1.0) == 10_000


def test_newcombe_interval_matches_a_published_worked_example():
    # Complete response before and after consolidation therapy (Cavo et al. 2012),
    # [[59, 6], [16, 80]]: Newcombe's square-and-add interval -0.0621 (-0.1186 to
    # -0.0046) in Fagerland, Lydersen & Laake, Statistical Analysis of Contingency
    # Tables (2017), ch. 8, as their R package contingencytables tests it.
    counts = _counts(both_right=59, variant_only=6, reference_only=16, both_wrong=80)
    low, high = statistics.newcombe_interval(counts)
    assert (round(low, 4), round(high, 4)) == (-0.1186, -0.0046)
    result = statistics.paired_difference(counts)
    assert round(result["difference_points"], 2) == -6.21
    assert not result["within_noise"]  # the interval excludes 0 ...
    assert result["p_value"] == pytest.approx(0.0525, abs=1e-4)  # ... McNemar is at 5.2%


def test_newcombe_interval_is_symmetric_nested_and_narrows_with_more_images():
    counts = _counts(300, 12, 7, 40)
    swapped = _counts(300, 7, 12, 40)
    low, high = statistics.newcombe_interval(counts)
    assert statistics.newcombe_interval(swapped) == pytest.approx((-high, -low))
    assert low < (7 - 12) / 359 < high
    wide = statistics.newcombe_interval(counts, confidence=0.99)
    assert wide[0] < low and wide[1] > high
    tenfold = statistics.newcombe_interval({k: 10 * v for k, v in counts.items()})
    assert tenfold[1] - tenfold[0] < (high - low) / 2
    assert statistics.newcombe_interval(_counts(0, 0, 0, 0)) is None


def test_identical_models_still_get_an_interval_that_honours_the_sample_size():
    # 360 images, no discordant one: the true difference may still be about a point.
    result = statistics.paired_difference(_counts(359, 0, 0, 1))
    assert result["difference_points"] == 0 and result["p_value"] == 1.0
    low, high = result["interval_points"]
    assert -1.3 < low < -1.0 and high == pytest.approx(-low)
    assert result["within_noise"]


@pytest.mark.parametrize("confidence", [0, 1, 1.5, -0.1])
def test_a_confidence_outside_zero_one_is_refused(confidence):
    with pytest.raises(ValueError, match="confidence must be a level in"):
        statistics.paired_difference(_counts(5, 1, 1, 3), confidence=confidence)


def test_paired_counts_per_class_and_confusion_changes():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    reference = np.array([0, 0, 1, 1, 1, 2, 2, 0])
    variant = np.array([0, 1, 1, 1, 2, 2, 2, 2])
    counts = statistics.paired_counts(reference == labels, variant == labels)
    assert counts == _counts(both_right=4, reference_only=2, variant_only=1, both_wrong=1)
    rows = statistics.per_class(labels, reference, variant, num_classes=4)
    assert [row["count"] for row in rows] == [3, 2, 3, 0]
    assert rows[0]["recall"] == pytest.approx(1 / 3)
    assert rows[0]["change_points"] == pytest.approx(-100 / 3)
    assert rows[2]["change_points"] == pytest.approx(100 / 3)
    assert rows[3]["recall"] is None and rows[3]["change_points"] is None
    changes = statistics.confusion_changes(labels, reference, variant, num_classes=4)
    assert changes[0] == {"true": 0, "predicted": 1, "reference": 1, "variant": 2, "change": 1}
    assert {(c["true"], c["predicted"], c["change"]) for c in changes} == {
        (0, 1, 1), (1, 2, 1), (2, 0, -1)}
    assert statistics.confusion_changes(labels, reference, variant, num_classes=4, top=1) == \
        changes[:1]
    with pytest.raises(ValueError, match="same images"):
        statistics.paired_counts([True, False], [True])
    with pytest.raises(ValueError, match="one right/wrong flag"):
        statistics.paired_counts([0, 2], [1, 1])


def _unpaired_noise(top1, n):
    """The rule the report used before: within 2 binomial standard errors of one top-1."""
    return 2 * 100 * (top1 * (1 - top1) / n) ** 0.5


def test_paired_beyond_noise_where_the_unpaired_rule_saw_noise():
    # 10,000 images at 94%: a file that loses 30 images and gains none. The
    # unpaired rule allows +-0.47 points and calls the -0.30 noise; 30 one-way
    # discordant images are far beyond chance.
    result = statistics.paired_difference(_counts(9_370, 30, 0, 600))
    assert abs(result["difference_points"]) <= _unpaired_noise(0.94, 10_000)
    assert not result["within_noise"] and result["p_value"] < 1e-8
    assert result["interval_points"][1] < 0


def test_paired_noise_where_the_unpaired_rule_saw_a_difference():
    # Two models that disagree on every one of 1,000 images, 47% against 53%:
    # 6 points is beyond the unpaired rule's +-3.16, but 530 against 470
    # discordant images is what a fair coin gives 6% of the time.
    result = statistics.paired_difference(_counts(0, 470, 530, 0))
    assert result["difference_points"] == pytest.approx(6.0)
    assert result["difference_points"] > _unpaired_noise(0.47, 1_000)
    assert result["within_noise"] and result["p_value"] > 0.05


def test_fisher_exact_p_of_one_event_in_eight_against_none_in_thirteen():
    # One event among 21 items: the table as seen has probability 8/21 under the null, the
    # only other table (the event in the group of 13) 13/21, which is likelier: p = 8/21.
    assert statistics.fisher_exact_p(1, 8, 0, 13) == pytest.approx(8 / 21)
    assert statistics.fisher_exact_p(0, 4, 0, 4) == 1.0
    with pytest.raises(ValueError, match="3 of 2"):
        statistics.fisher_exact_p(3, 2, 0, 4)
