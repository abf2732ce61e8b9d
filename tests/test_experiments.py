"""Tests for experiments/: degradation (command, verdict, render), cifar10_table, block_table,
readme_section.

Tiny settings prove the wiring and that every rendered number is the JSON's;
the full default degradation run is marked slow.
"""

import csv
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from test_datasets import write_cifar, write_idx  # tests/ is on sys.path under pytest

from experiments import block_table, cifar10_table, paper, readme_section
from experiments.degradation import command as degradation_command
from experiments.degradation import render as degradation_render
from experiments.degradation.command import main as degradation_main
from experiments.degradation.labels import MIXED_PRECISION_FOR_FLOAT32, NetLabel, precision_name
from experiments.degradation.verdict import verdict
from report import statistics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def table_rows(markdown, first_header):
    """{first cell: [cells]} of the Markdown table whose header starts with `first_header`."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} "))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells
    return rows


# ---------------------------------------------------------------- degradation


TINY = ["--epochs", "2", "--steps-per-epoch", "2", "--batch-size", "16"]


@pytest.fixture(scope="module")
def tiny_degradation(tmp_path_factory):
    out = tmp_path_factory.mktemp("degradation")
    assert degradation_main(["--models", "plain20,resnet20", *TINY, "--out", str(out)]) == 0
    return out


def test_degradation_writes_consistent_files(tiny_degradation):
    out = tiny_degradation
    for name in ("config.json", "curves.json", "curves.csv", "degradation.png",
                 "summary.json", "results.md"):
        assert (out / name).stat().st_size > 0, name
    curves = json.loads((out / "curves.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert list(curves) == ["plain20", "resnet20"]
    with open(out / "curves.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4  # 2 nets x 2 epochs
    for row in rows:
        c = curves[row["model"]]
        i = int(row["epoch"]) - 1
        for key in ("train_error", "train_error_running", "test_error", "loss"):
            assert float(row[key]) == pytest.approx(c[key][i])
    results = (out / "results.md").read_text()
    table = table_rows(results, "net")
    for net in summary["nets"]:
        c = curves[net["model"]]
        assert c["epoch"] == [1, 2] and c["steps_per_epoch"] == 2
        assert net["train_error"] == c["train_error"][-1]
        assert net["test_error"] == c["test_error"][-1]
        assert 0 <= net["train_error"] <= 100 and 0 <= net["test_error"] <= 100
        cells = table[net["model"]]
        assert cells[5] == f"{net['train_error']:.2f}" and cells[6] == f"{net['test_error']:.2f}"
        assert cells[3] == f"{net['params']:,}"
        # The last epoch's per-image flags are what its errors were computed from.
        flags = c["final_correct"]
        assert len(flags["train"]) == summary["num_train"]
        assert len(flags["test"]) == summary["num_test"] == 360
        assert 100 * flags["test"].count("0") / 360 == pytest.approx(net["test_error"])
    # digits has no paper column; the verdict in results.md is rendered from summary.json's.
    assert "paper test error" not in results
    assert degradation_render.verdict_markdown(summary) in results
    verdict = summary["verdict"]
    assert verdict["degradation"] is None and verdict["residual"] is None  # one depth each
    (pair,) = verdict["plain_vs_residual"]["pairs"]
    assert (pair["reference"], pair["other"], pair["seed"]) == ("plain20", "resnet20", 0)
    assert pair["precision"] == curves["resnet20"]["precision"]["policy"].removeprefix("mixed_")
    assert pair["test_gap"]["n"] == 360
    assert pair["test_gap"]["difference_points"] == pytest.approx(
        pair["other_test"] - pair["reference_test"])
    assert verdict["paired"] and verdict["seeds"] == [0] and verdict["fig6"]["judged"] == []
    assert summary["noise_test"].startswith("paired: Newcombe 1998 method 10")
    assert "95% interval of the paired difference excludes 0" in results
    config = json.loads((out / "config.json").read_text())
    assert config["train_configs"]["plain20"]["train"]["learning_rate"] == 0.05


def curve(train, test=None):
    return {"train_error": list(train), "test_error": list(test or train)}


def verdict_words(curves, *, num_train=1000, num_test=1000, seed=0):
    """The verdict of `curves` and its Markdown, as results.md renders it."""
    result = verdict(curves, seed=seed)
    return result, degradation_render.verdict_markdown(
        {"verdict": result, "num_train": num_train, "num_test": num_test})


PAPER_LIKE = {"plain20": curve([40, 10, 8]), "plain56": curve([60, 20, 12]),
              "resnet20": curve([40, 10, 9]), "resnet56": curve([45, 9, 6])}
OPPOSITE = {"plain20": curve([40, 20, 12]), "plain56": curve([60, 10, 8]),
            "resnet20": curve([40, 9, 6]), "resnet56": curve([45, 10, 9])}


def test_verdict_follows_the_numbers_both_ways():
    holds, words = verdict_words(PAPER_LIKE, num_train=1437)
    assert holds["degradation"]["reproduced"] and holds["residual"]["reproduced"]
    assert holds["plain_vs_residual"]["reproduced"]  # resnet56 6% < plain56 12%
    (pair,) = holds["degradation"]["pairs"]
    assert (pair["reference"], pair["other"], pair["relation"]) == ("plain20", "plain56", "higher")
    assert (pair["reference_train"], pair["other_train"], pair["train_gap"]) == (8, 12, None)
    assert holds["fig6"] == {"judged": ["degradation", "residual"],
                             "reproduced": ["degradation", "residual"]}
    assert "Degradation (Fig. 6 left: the deeper plain net trains worse), plain56 against " \
           "plain20: reproduced. Per precision: precision not recorded: 1 of 1 seed (seed 0)." \
        in words
    assert "| 0 | — | plain56 vs plain20 | 12.00 vs 8.00 | — | — |" in words
    assert "Both of Fig. 6's claims hold in every pair judged" in words
    assert "0.070 points" in words and "no gap's noise was tested" in words

    fails, words = verdict_words(OPPOSITE)
    assert fails["degradation"]["reproduced"] is False
    assert fails["residual"]["reproduced"] is False and fails["fig6"]["reproduced"] == []
    assert "plain56 against plain20: not reproduced. Per precision: precision not recorded: " \
           "0 of 1 seed." in words
    assert "| resnet56 vs resnet20 | 9.00 vs 6.00 |" in words and "| no (higher) |" in words
    assert "Neither of Fig. 6's two claims holds in every pair judged" in words

    tie, words = verdict_words({"plain20": curve([5, 0]), "plain56": curve([9, 0])})
    assert tie["degradation"]["pairs"][0]["relation"] == "equal"
    assert not tie["degradation"]["reproduced"] and tie["residual"] is None
    assert "no (the same error)" in words
    assert "Residual learning (Fig. 6 right: the deeper ResNet trains better): not tested" \
        in words
    assert "The one Fig. 6 claim judged does not hold in every pair judged" in words

    floor, words = verdict_words({"resnet20": curve([5, 0]), "resnet56": curve([9, 0.2])})
    assert floor["residual"]["reproduced"] is False and floor["residual"]["pairs"][0]["floor"]
    assert "no (resnet20 fits every training image: no net can end lower)" in words

    diverged, words = verdict_words({**PAPER_LIKE, "plain56": curve([])})
    assert diverged["degradation"]["reproduced"] is None
    assert diverged["degradation"]["pairs"][0]["diverged"] == ["plain56"]
    assert diverged["degradation"]["by_precision"][0]["unjudged_seeds"] == [0]
    assert "cannot be judged" in words and "seed 0 not judged (a net diverged)" in words
    assert "not judged: plain56 diverged before its first epoch" in words
    assert diverged["fig6"] == {"judged": ["residual"], "reproduced": ["residual"]}


def _flags(errors, n=1000):
    """Per-image flags with the first `errors` images wrong."""
    return "0" * errors + "1" * (n - errors)


def test_a_gap_within_the_noise_is_not_called_reproduced():
    # Paired: plain56 is wrong on plain20's 100 training images and 5 more (+0.5
    # points, 5 discordant images: noise); resnet56 is right on 40 of resnet20's
    # 50 (-4 points, 40 discordant images one way: beyond the noise).
    close = {"plain20": curve([20, 10.0]), "plain56": curve([30, 10.5]),
             "resnet20": curve([20, 5.0]), "resnet56": curve([30, 1.0])}
    for c in close.values():
        c["final_correct"] = {"train": _flags(round(10 * c["train_error"][-1])),
                              "test": _flags(round(10 * c["test_error"][-1]))}
    checks, words = verdict_words(close)
    (degradation,) = checks["degradation"]["pairs"]
    assert degradation["relation"] == "higher"
    assert degradation["train_gap"]["only_other_wrong"] == 5
    assert degradation["beyond_noise"] is False and degradation["reproduced"] is False
    assert "no (within the noise: the 95% interval contains 0)" in words
    (residual,) = checks["residual"]["pairs"]
    gap = residual["train_gap"]
    assert (gap["only_reference_wrong"], gap["only_other_wrong"]) == (40, 0)
    assert gap["difference_points"] == pytest.approx(-4.0) and gap["interval_points"][1] < 0
    assert residual["beyond_noise"] and residual["reproduced"]
    assert f"| resnet56 vs resnet20 | 1.00 vs 5.00 | -4.00 (95% CI " \
           f"{gap['interval_points'][0]:+.2f} to {gap['interval_points'][1]:+.2f}) | " \
           f"p < 0.001 |" in words
    # Curves without per-image flags (runs before they were kept): no noise test.
    del close["plain56"]["final_correct"]
    unflagged = verdict(close)
    assert unflagged["degradation"]["pairs"][0]["train_gap"] is None
    assert unflagged["degradation"]["reproduced"]


def _flagged(train, test=None, *, policy=None):
    """A curve whose last epoch has `train` (and `test`) per mille of 1000 images wrong."""
    c = curve([50, train / 10], [50, (test or train) / 10])
    c["final_correct"] = {"train": _flags(train), "test": _flags(test or train)}
    if policy:
        c["precision"] = {"policy": policy, "reason": "as the test says"}
    return c


def _seeds_and_precisions():
    """Nets of two precisions and three seeds with known per-mille training errors."""
    bf16 = "mixed_bfloat16"
    return {
        # bfloat16 (the preset's choice here): resnet56 ends above resnet20 with seed 0,
        # below it with seed 1; plain20 has no plain56 to compare with.
        "resnet20": _flagged(60, policy=bf16), "resnet56": _flagged(100, policy=bf16),
        "plain20": _flagged(60, policy=bf16),
        "resnet20@seed1": _flagged(100, policy=bf16), "resnet56@seed1": _flagged(40, policy=bf16),
        # float32: resnet56 below resnet20 with seeds 0 and 1; with seed 2 by 2 images only.
        "resnet20@float32": _flagged(80), "resnet56@float32": _flagged(40),
        "plain20@float32": _flagged(80), "plain56@float32": _flagged(140),
        "resnet20@seed1@float32": _flagged(80), "resnet56@seed1@float32": _flagged(50),
        "resnet20@seed2@float32": _flagged(80), "resnet56@seed2@float32": _flagged(78),
    }


def test_every_curve_of_the_figure_is_drawn_and_named_apart(tmp_path):
    curves = {label: {**c, "epoch": [1, 2], "residual": label.startswith("resnet"),
                      "depth": int(label.split("@")[0][-2:])}
              for label, c in _seeds_and_precisions().items()}
    figure = degradation_render.plot(curves, tmp_path / "degradation.png", dataset="digits")
    assert (tmp_path / "degradation.png").stat().st_size > 0
    for ax in figure.axes:
        lines = ax.get_lines()
        looks = [(line.get_color(), str(line.get_linestyle()), str(line.get_marker()),
                  line.get_linewidth()) for line in lines]
        assert len(set(looks)) == len(looks), ax.get_title()
        names = [line.get_label() for line in lines]
        assert len(set(names)) == len(names)
    # Each net in each of its panels, named by kind, depth, seed and precision; bold, the mean
    # over the float32 seeds both depths have, where there are two or more.
    names = {line.get_label() for ax in figure.axes for line in ax.get_lines()}
    assert {"ResNet-56, seed 1, bfloat16", "ResNet-56, seed 2, float32", "plain-20, seed 0, "
            "bfloat16", "ResNet-56, mean of float32 seeds 0, 1, 2"} <= names
    assert sum(len(ax.get_lines()) for ax in figure.axes) == 2 * (len(curves) + 2)
    # A seed only the deeper ResNet has stays out of both means: they average the same seeds.
    curves["resnet56@seed3@float32"] = {**curves["resnet56@float32"], "depth": 56}
    figure = degradation_render.plot(curves, tmp_path / "degradation.png", dataset="digits")
    means = [line.get_label() for line in figure.axes[1].get_lines() if "mean" in line.get_label()]
    assert means == ["ResNet-20, mean of float32 seeds 0, 1, 2",
                     "ResNet-56, mean of float32 seeds 0, 1, 2"]


def test_each_claim_is_counted_per_seed_and_precision():
    checks, words = verdict_words(_seeds_and_precisions())
    residual = checks["residual"]
    assert [(p["seed"], p["precision"], p["reproduced"]) for p in residual["pairs"]] == [
        (0, "float32", True), (1, "float32", True), (2, "float32", False),
        (0, "bfloat16", False), (1, "bfloat16", True)]
    assert residual["by_precision"] == [
        {"precision": "float32", "seeds": [0, 1, 2], "reproduced_seeds": [0, 1],
         "unjudged_seeds": []},
        {"precision": "bfloat16", "seeds": [0, 1], "reproduced_seeds": [1],
         "unjudged_seeds": []}]
    assert (residual["judged"], residual["reproduced_pairs"], residual["reproduced"]) == \
        (5, 3, False)
    assert degradation_render.claim_counts(residual) == \
        "float32: 2 of 3 seeds (seeds 0, 1); bfloat16: 1 of 2 seeds (seed 1)"
    assert "resnet56 against resnet20: reproduced in 3 of 5 pairs of nets trained alike, so " \
           "not in every one. Per precision: float32: 2 of 3 seeds (seeds 0, 1); bfloat16: 1 " \
           "of 2 seeds (seed 1)." in words
    # Each pair's difference in training error, its interval and McNemar's p, image by image.
    seed0 = residual["pairs"][0]
    assert (seed0["reference"], seed0["other"]) == ("resnet20@float32", "resnet56@float32")
    gap = seed0["train_gap"]
    assert gap["difference_points"] == pytest.approx(-4.0) and gap["only_reference_wrong"] == 40
    assert gap["p_value"] == statistics.mcnemar_exact_p(0, 40)
    expected = statistics.paired_difference({"both_right": 920, "reference_only": 0,
                                             "variant_only": 40, "both_wrong": 40})
    assert gap["interval_points"] == pytest.approx([-x for x in
                                                    expected["interval_points"][::-1]])
    seed2 = residual["pairs"][2]
    assert seed2["relation"] == "lower" and seed2["beyond_noise"] is False
    # Degradation: only float32 seed 0 has both plain nets.
    assert checks["degradation"]["by_precision"] == [
        {"precision": "float32", "seeds": [0], "reproduced_seeds": [0], "unjudged_seeds": []}]
    # Plain against residual: depth 56 in every group, so its pairs count over the seeds;
    # bfloat16 has both kinds at 20 only, which is not judged against the 56s of float32.
    assert [(p["models"], p["precision"], p["reproduced"])
            for p in checks["plain_vs_residual"]["pairs"]] == [
        (["plain56", "resnet56"], "float32", True)]
    assert checks["fig6"] == {"judged": ["degradation", "residual"],
                              "reproduced": ["degradation"]}
    assert checks["seeds"] == [0, 1, 2]
    assert "One of Fig. 6's two claims holds in every pair judged, the other does not." in words
    assert "Seeds 0, 1 and 2; one training image is 0.100 points" in words


def test_nets_trained_twice_are_compared_with_their_twin():
    checks, words = verdict_words(_seeds_and_precisions())
    seeds = {(c["reference"], c["other"]): c for c in checks["seed_twins"]}
    assert set(seeds) == {("resnet20", "resnet20@seed1"), ("resnet56", "resnet56@seed1"),
                          ("resnet20@float32", "resnet20@seed1@float32"),
                          ("resnet20@float32", "resnet20@seed2@float32"),
                          ("resnet56@float32", "resnet56@seed1@float32"),
                          ("resnet56@float32", "resnet56@seed2@float32")}
    twin = seeds["resnet56", "resnet56@seed1"]
    assert (twin["reference_seed"], twin["other_seed"], twin["other_precision"]) == \
        (0, 1, "bfloat16")
    assert twin["train_gap"]["difference_points"] == pytest.approx(-6.0)
    assert not twin["train_gap"]["within_noise"]
    assert "| resnet56 | bfloat16 | 1 vs 0 | 4.00 vs 10.00 | -6.00 (95% CI" in words
    precision = {c["other"]: c for c in checks["precision_twins"]}
    assert set(precision) == {"resnet20@float32", "resnet56@float32", "plain20@float32",
                              "resnet20@seed1@float32", "resnet56@seed1@float32"}
    twin = precision["resnet56@float32"]
    assert (twin["reference"], twin["reference_precision"], twin["other_precision"]) == \
        ("resnet56", "bfloat16", "float32")
    assert twin["train_gap"]["difference_points"] == pytest.approx(-6.0)
    assert "| resnet56 | 0 | float32 vs bfloat16 | 4.00 vs 10.00 | -6.00 (95% CI" in words


def test_twins_run_in_one_order_whatever_order_the_nets_were_listed_in():
    nets = _seeds_and_precisions()
    listed, reversed_ = verdict(nets), verdict(dict(reversed(list(nets.items()))))
    for vary in ("seed_twins", "precision_twins"):
        assert listed[vary] == reversed_[vary]
    # The preset's precision is every precision twin's reference, the experiment's seed every
    # seed twin's; rows run by model, then float32 first, then seed.
    assert [(t["reference"], t["other"]) for t in reversed_["precision_twins"]] == [
        ("plain20", "plain20@float32"), ("resnet20", "resnet20@float32"),
        ("resnet20@seed1", "resnet20@seed1@float32"), ("resnet56", "resnet56@float32"),
        ("resnet56@seed1", "resnet56@seed1@float32")]
    assert [(t["reference"], t["other"]) for t in reversed_["seed_twins"]][:3] == [
        ("resnet20@float32", "resnet20@seed1@float32"),
        ("resnet20@float32", "resnet20@seed2@float32"), ("resnet20", "resnet20@seed1")]


def test_the_error_grid_reads_each_net_across_its_seeds_and_precisions():
    curves = {label: {**c, "epoch": [1], "residual": label.startswith("resnet"),
                      "depth": int(label.split("@")[0][-2:]), "params": 1, "seconds": [1.0],
                      "diverged_at": None}
              for label, c in _seeds_and_precisions().items()}
    summary = {"seed": 0, "nets": degradation_command.net_rows(curves, dataset="digits", seed=0)}
    grid = degradation_render.error_grid(summary)
    assert grid.splitlines()[2] == ("| net | float32, seed 0 | float32, seed 1 | float32, seed 2 "
                                     "| bfloat16, seed 0 | bfloat16, seed 1 |")
    rows = table_rows(grid, "net")
    assert list(rows) == ["plain20", "plain56", "resnet20", "resnet56"]
    # _flagged(n): n of 1,000 training images wrong, and as many test images.
    assert rows["resnet56"][1:] == ["4.00 (4.00)", "5.00 (5.00)", "7.80 (7.80)",
                                    "10.00 (10.00)", "4.00 (4.00)"]
    assert rows["plain56"][1:] == ["14.00 (14.00)", "—", "—", "—", "—"]


def test_a_training_loss_that_jumps_is_counted_per_precision():
    bf16 = "mixed_bfloat16"
    curves = {  # resnet56's loss rises by 0.3 of its first at epoch 3; resnet20's by 0.02
        "resnet56": {**_flagged(100, policy=bf16), "epoch": [1, 2, 3], "loss": [1.0, 0.6, 0.9]},
        "resnet20": {**_flagged(60, policy=bf16), "epoch": [1, 2, 3], "loss": [1.0, 0.8, 0.82]},
        "resnet56@float32": {**_flagged(40), "epoch": [1, 2, 3], "loss": [1.0, 0.6, 0.5]},
        "plain20@float32": _flagged(80)}  # no loss recorded: left out
    checks, words = verdict_words(curves)
    jumps = checks["loss_jumps"]
    assert [(g["precision"], g["nets"], g["jumps"]) for g in jumps["by_precision"]] == [
        ("float32", 1, []),
        ("bfloat16", 2, [{"run": "resnet56", "epoch": 3, "before": 0.6, "after": 0.9}])]
    assert jumps["fisher_p"] == statistics.fisher_exact_p(0, 1, 1, 2)
    assert ("Training-loss jumps, a rise from one epoch to the next by more than 10% of the "
            "first epoch's loss: float32 0 of 1 net; bfloat16 1 of 2 nets (resnet56, epoch 3: "
            "0.600 to 0.900). Fisher's exact test, float32 against bfloat16: p = 1.000.") in words
    # No recorded loss at all: no sentence.
    assert "Training-loss" not in verdict_words(_seeds_and_precisions())[1]


def test_a_policy_chosen_for_two_reasons_is_named_once():
    bf16 = {"policy": "mixed_bfloat16"}
    summary = {"seed": 0, "nets": [
        {"run": "resnet20", "model": "resnet20",
         "precision": {**bf16, "reason": "CPU with AMX-BF16"}},
        {"run": "resnet56", "model": "resnet56",
         "precision": {**bf16, "reason": "CPU with AVX512"}},
        {"run": "resnet56@float32", "model": "resnet56",
         "precision": {"policy": "float32", "reason": "off"}}]}
    assert degradation_render._precision_words(summary) == (
        ", trained in mixed_bfloat16 (CPU with AMX-BF16; CPU with AVX512), "
        "the @float32 rows in float32")


@pytest.mark.parametrize("label, expected", [
    ("resnet56", ("resnet56", 3, "auto")),
    ("resnet56@seed1", ("resnet56", 1, "auto")),
    ("plain20@float32@seed12", ("plain20", 12, "float32")),
])
def test_net_labels_name_the_seed_and_precision(label, expected):
    net = NetLabel.parse(label, seed=3)
    assert (net.model, net.seed, net.precision) == expected
    config = degradation_command.net_config("digits", model=net.model, seed=net.seed,
                                            precision=net.precision)
    assert config.train.seed == net.seed
    assert config.train.mixed_precision == (
        MIXED_PRECISION_FOR_FLOAT32 if net.precision == "float32" else "auto")


@pytest.mark.parametrize("curve_precision, setting, expected", [
    ({"policy": "mixed_bfloat16", "reason": "CPU with AVX512-BF16"}, "auto", "bfloat16"),
    ({"policy": "float32", "reason": "--train.mixed_precision off"}, "float32", "float32"),
    (None, "float32", "float32"),
    (None, "auto", None),  # a run from before the policy was recorded
])
def test_a_nets_precision_is_the_policy_it_recorded(curve_precision, setting, expected):
    assert precision_name({"precision": curve_precision}, precision=setting) == expected


def test_a_finished_net_is_kept_and_only_the_missing_one_trains(tiny_degradation, tmp_path,
                                                                  capsys):
    out = tmp_path / "resumed"
    out.mkdir()
    for name in ("config.json", "curves.json"):
        (out / name).write_text((tiny_degradation / name).read_text())
    assert degradation_main(["--models", "plain20,resnet20,resnet20@seed1", *TINY,
                             "--out", str(out)]) == 0
    earlier = json.loads((tiny_degradation / "curves.json").read_text())
    curves = json.loads((out / "curves.json").read_text())
    assert curves["plain20"] == earlier["plain20"] and curves["resnet20"] == earlier["resnet20"]
    assert curves["resnet20@seed1"]["seed"] == 1 and len(curves["resnet20@seed1"]["epoch"]) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert [n["run"] for n in summary["nets"]] == ["plain20", "resnet20", "resnet20@seed1"]
    assert summary["verdict"]["seed_twins"][0]["other"] == "resnet20@seed1"
    # Another recipe, or a list without the folder's nets, would overwrite them: refused.
    before = (out / "curves.json").read_text()
    for models, epochs in (("plain20,resnet20,resnet20@seed1", "1"), ("plain20", "2")):
        assert degradation_main(["--models", models, "--epochs", epochs, "--steps-per-epoch",
                                 "2", "--batch-size", "16", "--out", str(out)]) == 2
        assert "holds an earlier degradation run" in capsys.readouterr().err
    assert (out / "curves.json").read_text() == before


# The keys the single-module experiments/degradation.py wrote (the Fashion-MNIST run still
# trains with it): config.json's, and each net's in curves.json.
OLD_CONFIG_KEYS = ["models", "dataset", "seed", "train_subset", "recipe", "train_configs"]
OLD_CURVE_KEYS = ["epoch", "train_error", "train_error_running", "test_error", "loss", "lr",
                  "seconds", "cpu_seconds", "final_correct", "residual", "depth", "params",
                  "steps_per_epoch", "precision", "diverged_at", "model", "seed",
                  "precision_setting"]


def _old_run(out, labels, *, epochs=2):
    """A run folder as the old code left it: config.json and curves.json, nets finished."""
    from job import config as config_lib

    configs = {label: degradation_command.net_config(
        "digits", model=n.model, seed=n.seed, precision=n.precision, epochs=epochs,
        batch_size=16, steps_per_epoch=2) for label in labels
        for n in [NetLabel.parse(label, seed=0)]}
    config = {"models": list(labels), "dataset": "digits", "seed": 0, "train_subset": None,
              "recipe": degradation_command.recipe(configs[labels[0]]),
              "train_configs": {label: config_lib.to_dict(c) for label, c in configs.items()}}
    curves = {}
    for i, label in enumerate(labels):
        n = NetLabel.parse(label, seed=0)
        c = _flagged(100 + 40 * i)
        curves[label] = {"epoch": [1, 2], "train_error": c["train_error"],
                         "train_error_running": [60.0, 20.0], "test_error": c["test_error"],
                         "loss": [2.0, 1.0], "lr": [0.05, 0.05], "seconds": [1.0, 2.0],
                         "cpu_seconds": [1.5, 3.0], "final_correct": c["final_correct"],
                         "residual": n.model.startswith("resnet"), "depth": 20,
                         "params": 271_098, "steps_per_epoch": 2,
                         "precision": {"policy": "mixed_bfloat16", "reason": "CPU"},
                         "diverged_at": None, "model": n.model, "seed": n.seed,
                         "precision_setting": n.precision}
    assert list(config) == OLD_CONFIG_KEYS and list(curves[labels[0]]) == OLD_CURVE_KEYS
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "curves.json").write_text(json.dumps(curves, indent=1))
    return json.loads(json.dumps(config)), curves


def test_a_run_of_the_old_code_is_resumed_with_its_finished_nets(tmp_path):
    config, curves = _old_run(tmp_path, ["plain20", "resnet20", "resnet20@seed1"])
    # Nothing to train: every listed net is finished, so only the outputs are written again.
    assert degradation_main(["--models", "plain20,resnet20,resnet20@seed1", *TINY,
                             "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "curves.json").read_text()) == curves
    assert json.loads((tmp_path / "config.json").read_text()) == config
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [n["train_error"] for n in summary["nets"]] == [10.0, 14.0, 18.0]
    (pair,) = summary["verdict"]["plain_vs_residual"]["pairs"]
    assert pair["train_gap"]["difference_points"] == pytest.approx(4.0)


def test_render_only_judges_an_old_run_again_and_trains_nothing(tmp_path):
    # The digits run committed under docs/ predates seeds, precisions and per-image flags.
    committed = os.path.join(ROOT, "docs", "experiments", "degradation")
    out = tmp_path / "digits"
    shutil.copytree(committed, out)
    before = json.loads((out / "summary.json").read_text())
    assert degradation_main(["--render-only", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {k: v for k, v in summary.items() if k != "verdict"} == \
        {k: v for k, v in before.items() if k != "verdict"}
    assert summary["verdict"]["fig6"] == {"judged": ["degradation", "residual"],
                                          "reproduced": ["degradation"]}
    assert not summary["verdict"]["paired"]
    assert summary["verdict"]["residual"]["pairs"][0]["floor"]
    results = (out / "results.md").read_text()
    assert degradation_render.verdict_markdown(summary) in results
    with open(os.path.join(committed, "curves.csv")) as f:
        assert (out / "curves.csv").read_text() == f.read()


def test_render_only_rewrites_what_the_run_wrote(tiny_degradation, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(tiny_degradation, out)
    assert degradation_main(["--render-only", "--out", str(out)]) == 0
    for name in ("summary.json", "results.md", "curves.csv", "curves.json", "config.json"):
        assert (out / name).read_text() == (tiny_degradation / name).read_text(), name


def test_degradation_trains_on_a_stratified_subset(tmp_path):
    write_idx(tmp_path, gz=True, num_train=60)
    dataset = degradation_command.load_training_subset("fashion_mnist", data_dir=str(tmp_path),
                                                       train_subset=30)
    assert (dataset.num_train, dataset.num_test) == (30, 10)
    _, labels = next(iter(dataset.train(30, shuffle=False, augment=False)))
    assert sorted(labels.numpy().tolist()) == sorted(list(range(10)) * 3)  # every class kept


def test_degradation_on_tiny_fashion_mnist_with_a_subset(tmp_path):
    write_idx(tmp_path / "data", gz=True, num_train=60, num_test=20)
    out = tmp_path / "run"
    assert degradation_main(["--dataset", "fashion_mnist", "--data-dir", str(tmp_path / "data"),
                             "--train-subset", "40", "--models", "plain20,resnet20",
                             "--epochs", "2", "--steps-per-epoch", "1", "--batch-size", "8",
                             "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["num_train"], summary["train_subset"], summary["num_test"]) == (40, 40, 20)
    assert summary["recipe"]["preset"] == "degradation-fashion-mnist"
    assert summary["recipe"]["augment"] and summary["recipe"]["weight_decay"] == 1e-4
    (pair,) = summary["verdict"]["plain_vs_residual"]["pairs"]
    assert pair["train_gap"]["n"] == 40 and pair["test_gap"]["n"] == 20
    assert "on the same 40 training and 20 test images" in (out / "results.md").read_text()


def test_degradation_on_a_tiny_cifar10_archive_shows_the_papers_column(tmp_path):
    archive, _, _ = write_cifar(tmp_path, "cifar10", layout="archive_file")
    out = tmp_path / "run"
    assert degradation_main(["--dataset", "cifar10", "--data-dir", str(archive), "--models",
                             "plain20,resnet20", "--epochs", "1", "--steps-per-epoch", "1",
                             "--batch-size", "8", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["num_train"], summary["num_test"]) == (100, 20)
    assert summary["recipe"]["augment"]  # the paper's pad-crop-flip on CIFAR
    rows = table_rows((out / "results.md").read_text(), "net")
    assert rows["resnet20"][7] == f"{paper.CIFAR10_TEST_ERROR['resnet20']:.2f}" == "8.75"
    assert rows["plain20"][7] == "—"


@pytest.mark.parametrize("args, match", [
    (["--models", "resnet50"], "resnet50 is an ImageNet net"),
    (["--models", "resnet21"], "Unknown model name 'resnet21'"),
    (["--dataset", "mnist"], "--dataset 'mnist' is not valid; valid: digits, fashion_mnist, "
                             "cifar10"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--models", "resnet20@fp16"], "'resnet20@fp16' has an unknown tag @fp16; the tags are "
                                    "@seedN and @float32"),
    (["--models", "resnet20,resnet20"], "--models lists a net twice"),
    (["--render-only"], "No such file or directory"),
])
def test_degradation_bad_arguments_get_one_line(args, match, capsys, tmp_path):
    assert degradation_main([*args, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and match in err and "\n" not in err
    assert not (tmp_path / "x").exists()


def test_render_only_needs_the_folder(capsys):
    assert degradation_main(["--render-only"]) == 2
    assert "--render-only needs --out" in capsys.readouterr().err


# ---------------------------------------------------------------- cifar10_table


def test_cifar10_table_smoke_on_a_tiny_archive(tmp_path):
    archive, _, _ = write_cifar(tmp_path, "cifar10", layout="archive_file")
    out = tmp_path / "table"
    assert cifar10_table.main(["--smoke", "--models", "resnet20", "--data-dir", str(archive),
                               "--out", str(out)]) == 0
    result = json.loads((out / "resnet20" / "train_result.json").read_text())
    config = json.loads((out / "resnet20" / "config.json").read_text())
    assert config["preset"] == "cifar10-paper" and config["stages"] == ["train"]
    assert config["train"]["weight_decay"] == 1e-4 and config["train"]["steps_per_epoch"] == 2
    summary = json.loads((out / "results.json").read_text())
    (row,) = summary["rows"]
    assert summary["smoke"] and summary["num_test"] == 20
    assert row["test_error"] == pytest.approx(100 * (1 - result["test_top1"]))
    assert row["paper_test_error"] == 8.75
    assert row["difference"] == pytest.approx(row["test_error"] - 8.75)
    cells = table_rows((out / "results.md").read_text(), "net")["resnet20"]
    assert cells[1:4] == [f"{row['test_error']:.2f}", "8.75", f"{row['difference']:+.2f}"]
    # A rerun reuses the finished net instead of training it again.
    mtime = (out / "resnet20" / "train_result.json").stat().st_mtime
    assert cifar10_table.main(["--smoke", "--models", "resnet20", "--data-dir", str(archive),
                               "--out", str(out)]) == 0
    assert (out / "resnet20" / "train_result.json").stat().st_mtime == mtime


def test_cifar10_table_uses_the_paper_recipe():
    config = cifar10_table.net_config("resnet110", data_dir=None)
    assert (config.train.batch_size, config.train.learning_rate, config.train.epochs,
            config.train.lr_decay_epochs) == (128, 0.1, 182, (91, 136.5))
    # 400 iterations of 128 images at lr / 10 (paper sec. 4.2), in epochs of 45k images.
    assert config.train.warmup_epochs * 45_000 / 128 == pytest.approx(400)
    assert cifar10_table.net_config("resnet56", data_dir=None).train.warmup_epochs == 0
    assert repr(config.data.val_split) == "5000"  # the paper's 45k/5k split, a count


def test_cifar10_table_rejects_imagenet_nets(capsys):
    assert cifar10_table.main(["--smoke", "--models", "resnet50"]) == 2
    assert "resnet50 is an ImageNet net" in capsys.readouterr().err


def test_cifar10_table_missing_archive_exits_2(tmp_path, capsys):
    out = tmp_path / "table"
    code = cifar10_table.main(["--smoke", "--data-dir", str(tmp_path / "nowhere"),
                               "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err.startswith("error: CIFAR-10 not found") and "cifar-10-python.tar.gz" in err
    assert not out.exists()


# ---------------------------------------------------------------- block_table


@pytest.fixture(scope="module")
def blocks(tmp_path_factory):
    out = tmp_path_factory.mktemp("block_table")
    assert block_table.main(["--out", str(out)]) == 0
    return out


def test_block_table_numbers_are_count_macs_of_built_models(blocks):
    import resnet_keras as rk

    table = json.loads((blocks / "block_table.json").read_text())
    nets = {n["model"]: n for n in table["nets"]}
    for name in ("resnet34", "resnet50"):
        model = rk.build_model(name)
        assert (nets[name]["macs"], nets[name]["params"]) == (rk.count_macs(model),
                                                               model.count_params())
    assert "basic50" not in rk.REGISTRY  # the temporary spec is gone
    assert nets["basic50"]["depth"] == 50 == nets["resnet50"]["depth"]
    assert nets["basic50"]["macs"] > nets["resnet50"]["macs"]
    # Fig. 5 by hand: 56x56 maps; two 3x3 at 64-d, 1x1-3x3-1x1 at 256/64-d, two 3x3 at 256-d.
    expected = [56 * 56 * 2 * 9 * 64 * 64,
                56 * 56 * (256 * 64 + 9 * 64 * 64 + 64 * 256),
                56 * 56 * 2 * 9 * 256 * 256]
    assert [b["macs"] for b in table["blocks"]] == expected
    assert [b["formula_macs"] for b in table["blocks"]] == expected
    assert table["formula_matches_count_macs"]
    markdown = (blocks / "block_table.md").read_text()
    rows = table_rows(markdown, "net")
    assert rows["resnet50"][6] == f"{nets['resnet50']['macs'] / 1e9:.3f} G"
    assert rows["resnet50"][7] == "3.8 G"
    assert f"{expected[1]:,}" in markdown and table["explanation"] in markdown
    assert "69,632" in table["explanation"] and "16.9x fewer" in table["explanation"]


def test_readme_section_renders_from_the_json(tiny_degradation, blocks, tmp_path, capsys):
    docs = tmp_path / "docs"
    (docs / "degradation").mkdir(parents=True)
    (docs / "block_table").mkdir()
    for name in ("summary.json",):
        (docs / "degradation" / name).write_text((tiny_degradation / name).read_text())
    (docs / "block_table" / "block_table.json").write_text(
        (blocks / "block_table.json").read_text())
    summary = json.loads((docs / "degradation" / "summary.json").read_text())
    # A second dataset's run stands beside the first, column by column; this one
    # was judged by the unpaired rule before per-image results were kept.
    fashion = {**summary, "dataset": "fashion_mnist", "train_subset": summary["num_train"],
               "nets": [{**net, "train_error": 50.0, "train_error_se": 1.5}
                        for net in summary["nets"]],
               "verdict": verdict(_seeds_and_precisions())}
    del fashion["noise_test"]
    (docs / "degradation_fashion_mnist").mkdir()
    (docs / "degradation_fashion_mnist" / "summary.json").write_text(json.dumps(fashion))
    assert readme_section.main(["--docs", str(docs)]) == 0
    text = (docs / "README_section.md").read_text()
    fashion_words = degradation_render.verdict_markdown(fashion)
    assert degradation_render.verdict_markdown(summary) in text and fashion_words in text
    assert "Not measured here" in text and "8.75%" in text
    # Each run's final errors, a column per precision and seed.
    assert degradation_render.error_grid(summary) in text
    assert degradation_render.error_grid(fashion) in text
    # Which seeds and precisions hold each claim, dataset by dataset: on the page, and alone
    # for the README.
    claims_file = (docs / "README_claims.md").read_text()
    assert claims_file.startswith("Each claim is judged") and claims_file in text
    claims = table_rows(claims_file, "claim")
    assert claims[degradation_render.TITLES["residual"]][1:] == [
        "—", "float32: 2 of 3 seeds (seeds 0, 1); bfloat16: 1 of 2 seeds (seed 1)"]
    assert text.count(readme_section.UNPAIRED_NOTE) == 1  # under the Fashion-MNIST run only
    assert text.index(fashion_words) < text.index(readme_section.UNPAIRED_NOTE)
    assert f"--dataset fashion_mnist --train-subset {summary['num_train']}" in text
    assert readme_section.main(["--docs", str(tmp_path / "empty")]) == 2
    # A summary the old single-module experiment judged: its verdict must be decided again.
    fashion["verdict"] = {"text": "An old verdict."}
    (docs / "degradation_fashion_mnist" / "summary.json").write_text(json.dumps(fashion))
    capsys.readouterr()
    assert readme_section.main(["--docs", str(docs)]) == 2
    assert "python -m experiments.degradation --render-only --out " in capsys.readouterr().err


# ---------------------------------------------------------------- the default run


@pytest.mark.slow
def test_default_degradation_run_fits_ten_minutes(tmp_path):
    result = subprocess.run([sys.executable, "-m", "experiments.degradation", "--out",
                             str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [n["model"] for n in summary["nets"]] == list(degradation_command.DEFAULT_MODELS)
    assert summary["wall_seconds"] < 600
    assert len(re.findall(r"epoch +\d+/10 ", result.stdout)) == 40
    assert summary["verdict"]["degradation"]["reproduced"] is not None


# About a minute: two train.py processes of one epoch each, then the same command again.
@pytest.mark.slow
def test_onednn_compares_on_and_off_image_by_image_and_keeps_finished_runs(tmp_path):
    from experiments import onednn
    from report import statistics
    out = tmp_path / "onednn"
    command = [sys.executable, "-m", "experiments.onednn", "--seeds", "0", "--epochs", "1",
               "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    on, off = summary["runs"]
    # Each process ran what it was told, as TensorFlow itself reports it.
    assert (on["setting"], on["onednn"]["on"]) == ("on", True)
    assert off["onednn"] == {"on": False, "reason": "TF_ENABLE_ONEDNN_OPTS=0 as set"}
    [pair] = summary["comparisons"]
    assert pair["speedup"] == on["images_per_second"] / off["images_per_second"]
    assert pair["n"] == summary["num_test"] == 360
    assert pair["difference_points"] == pytest.approx(
        100 * (on["test_top1"] - off["test_top1"]))
    assert pair["within_noise"] == (pair["interval_points"][0] <= 0 <= pair["interval_points"][1])
    assert summary["noise_test"].startswith(f"paired: {statistics.INTERVAL_METHOD}")
    assert (out / "results.md").read_text().strip() == onednn.render(summary)
    # The same command again trains nothing: the finished runs are kept.
    stamp = (out / "seed0-onednn-on" / "train_result.json").stat().st_mtime_ns
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "done in" not in again.stdout and "done in" in done.stdout
    assert (out / "seed0-onednn-on" / "train_result.json").stat().st_mtime_ns == stamp
    assert json.loads((out / "summary.json").read_text()) == summary


def test_onednn_bad_seeds_get_one_line(capsys):
    from experiments import onednn
    with pytest.raises(SystemExit) as exit_:
        onednn.main(["--seeds", "0,x"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "--seeds 0,x: give comma-separated integers, e.g. 0,1,2")
