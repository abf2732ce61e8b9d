"""The section on the paper's claims, rendered from the experiments' JSON (arXiv 1512.03385).

    python -m experiments.readme_section   # writes docs/experiments/README_section.md
                                           # and docs/experiments/README_claims.md

The section is the experiments page's (docs/experiments.md); the claims, which
seeds and precisions reproduce each of Fig. 6's, stand in the README. Both go
in where `python -m tools.update_readme` renders them.

Reads docs/experiments/degradation/summary.json, docs/experiments/block_table/
block_table.json and, when a CIFAR-10 run has been copied there,
docs/experiments/cifar10_table/results.json. Nothing in the section is typed
by hand except the paper's claims in words; the paper's numbers come from
`experiments.paper`.
"""

import argparse
import json
import os
import sys

from experiments import paper
from experiments.degradation.command import DEFAULT_MODELS
from experiments.degradation.render import (
    TITLES,
    claim_counts,
    error_grid,
    schedule_words,
    verdict_markdown,
)
from report.markdown import cell, md_table

DOCS = os.path.join("docs", "experiments")
# What `main` writes into the docs folder: `render`'s section, then its claims.
OUTPUTS = ("README_section.md", "README_claims.md")


def _load(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


# The degradation runs shown side by side: {folder under docs: dataset in words}.
DEGRADATION_RUNS = {"degradation": "digits", "degradation_fashion_mnist": "Fashion-MNIST"}


# Under a run judged before its comparisons were paired (summary.json has no
# `noise_test`): it kept no per-image results, so it cannot be judged again here.
_RERUN = ("The paired test needs each net's per-image results, which this run did not keep: "
          "re-run the command above to judge it image by image.*")
UNPAIRED_NOTE = ("*This run's gaps were judged by an earlier, unpaired rule (two binomial "
                 "standard errors of the two errors). " + _RERUN)
UNTESTED_NOTE = "*This run's gaps were not tested against the noise. " + _RERUN


def _noise_note(summary):
    """The note under a run not judged image by image, or None."""
    if summary.get("noise_test"):
        return None
    recorded = any(net.get("train_error_se") is not None for net in summary["nets"])
    return UNPAIRED_NOTE if recorded else UNTESTED_NOTE


def claims_by_dataset(summaries):
    """One row per claim: in each dataset's run, how many seeds of each precision reproduce it."""
    names = list(summaries)
    rows = [[TITLES[claim]] + [cell(None if summary["verdict"][claim] is None
                                    else claim_counts(summary["verdict"][claim]))
                               for summary in summaries.values()]
            for claim in TITLES]
    return md_table(["claim", *(f"{name}: seeds reproducing it" for name in names)], rows,
                    align="l" * (1 + len(names)))


def claims_part(summaries):
    """Which seeds and precisions reproduce each claim, per dataset's run: a sentence and a table.

    The experiments page opens its degradation results with it and the README
    shows it under its link to that page.
    """
    return ("Each claim is judged on every pair of nets trained alike (the same seed and "
            "precision); per precision, the seeds whose pair reproduces it:\n\n"
            + claims_by_dataset({DEGRADATION_RUNS[f]: s for f, s in summaries.items()}))


def _warmup_note(recipe):
    """Why the warmup rises instead of holding the paper's tenth, for runs whose warmup does."""
    if recipe["schedule"] != "step" or recipe.get("warmup_shape") != "linear":
        return ""
    return (" Against the paper: its ResNet-110 warmup holds a tenth of the rate, then jumps "
            "to the peak; here the rate rises linearly (Goyal et al., arXiv 1706.02677), "
            "counted in steps, because that jump threw the deep nets of an earlier run back "
            "to near-chance training error.")


def degradation_part(summaries, *, docs, claims):
    """The degradation subsection from each dataset's summary.json, side by side.

    Args:
        summaries: {folder under `docs`: summary dict}, in `DEGRADATION_RUNS` order.
        docs: the experiments' output folder.
        claims: their `claims_part`, which opens the measurements.
    """
    lines = [
        "### Degradation (sec. 4.1-4.2, Fig. 4 and 6)", "",
        "**Paper.** Deeper plain nets have *higher training error* than shallower ones "
        "(plain-56 above plain-20 on CIFAR-10 throughout training), an optimization "
        "difficulty rather than overfitting; with identity shortcuts the deeper net trains "
        "to a lower error (ResNet-56 below ResNet-20).", "",
        f"**Measured here.** {claims}", "",
    ]
    for folder, summary in summaries.items():
        r = summary["recipe"]
        flag = f" --train-subset {summary['num_train']}" if summary.get("train_subset") else ""
        if summary.get("models", list(DEFAULT_MODELS)) != list(DEFAULT_MODELS):
            flag += f" --models {','.join(summary['models'])}"
        subset = " (a stratified subset)" if summary.get("train_subset") else ""
        lines += [
            f"**{DEGRADATION_RUNS[folder]}** (`python -m experiments.degradation --dataset "
            f"{summary['dataset']}{flag} --out {docs}/{folder}`, "
            f"{summary['wall_seconds']:.0f} s on {summary['machine']}): "
            f"{summary['num_train']:,} training images{subset}, {summary['num_test']:,} test "
            f"images, {r['epochs']} epochs per net, one recipe for all: lr "
            f"{r['learning_rate']:g} ({schedule_words(summary)}), augmentation "
            f"{'on' if r['augment'] else 'off'}; training error on the "
            f"{summary['training_error']}.{_warmup_note(r)}", "",
            error_grid(summary), "",
            verdict_markdown(summary), "",
            *([note, ""] if (note := _noise_note(summary)) else []),
            f"![training and test error of each run]({docs}/{folder}/degradation.png)", "",
        ]
    return lines


def cifar10_part(results, *, folder):
    """The Table 6 subsection, with our numbers when a real (non-smoke) run exists."""
    errors = ", ".join(f"ResNet-{m[len('resnet'):]} {e:.2f}%"
                       for m, e in paper.CIFAR10_TEST_ERROR.items())
    lines = ["### CIFAR-10 test error (sec. 4.2, Table 6)", "",
             f"**Paper.** {errors}: error falls as depth grows from 20 to 110 layers.", ""]
    if results is None or results.get("smoke"):
        lines += ["**Not measured here**: it needs the CIFAR-10 archive and a GPU (64k "
                  "iterations per net). Run it with", "",
                  "```bash",
                  "python -m experiments.cifar10_table --data-dir /data/cifar-10-python.tar.gz "
                  f"--out {folder}",
                  "```", "",
                  "which trains each net with train.py's `cifar10-paper` preset and writes "
                  "results.json and results.md there; rerun this renderer afterwards.", ""]
        return lines
    rows = [[r["model"], cell(r["test_error"], ".2f"), cell(r["paper_test_error"], ".2f"),
             cell(r["difference"], "+.2f")] for r in results["rows"]]
    return lines + ["**Measured here** (`python -m experiments.cifar10_table`):", "",
                    md_table(["net", "test error %", "paper %", "difference (points)"], rows,
                             align="lrrr"), ""]


def block_part(table, *, folder):
    """The basic-vs-bottleneck subsection from block_table.json."""
    from experiments.block_table import blocks_table, nets_table

    return [
        "### Basic and bottleneck blocks (sec. 4.1, Fig. 5, Table 1)", "",
        "**Paper.** For ResNet-50/101/152 each two-layer block becomes a 1x1-3x3-1x1 "
        "bottleneck: the 1x1 layers reduce and then restore the dimensions, so the "
        "bottleneck and the basic block \"have similar time complexity\".", "",
        f"**Measured here** (`python -m experiments.block_table --out {folder}`; parameters "
        f"from `count_params`, multiply-adds from `resnet_keras.count_macs`, checked against "
        f"the closed form):", "",
        blocks_table(table), "", nets_table(table), "",
        table["explanation"], "",
    ]


def render(*, docs=DOCS):
    """The experiments page's section and the README's claims, as Markdown, from the JSON.

    Returns:
        (section, claims): the whole section on the paper's claims, and
        `claims_part` of the degradation runs.

    Raises:
        FileNotFoundError: the degradation or block-table outputs are missing.
        ValueError: a degradation verdict from before the per-seed counts.
    """
    degradation = {folder: summary for folder in DEGRADATION_RUNS
                   if (summary := _load(os.path.join(docs, folder, "summary.json")))}
    for folder, summary in degradation.items():
        if "fig6" not in summary["verdict"]:
            raise ValueError(f"{os.path.join(docs, folder, 'summary.json')} holds a verdict "
                             f"judged before the claims were counted per seed and precision; "
                             f"run `python -m experiments.degradation --render-only --out "
                             f"{os.path.join(docs, folder)}` first.")
    blocks = _load(os.path.join(docs, "block_table", "block_table.json"))
    for name, value, command in (
            ("degradation/summary.json", degradation.get("degradation"),
             f"python -m experiments.degradation --out {docs}/degradation"),
            ("block_table/block_table.json", blocks,
             f"python -m experiments.block_table --out {docs}/block_table")):
        if value is None:
            raise FileNotFoundError(f"{os.path.join(docs, name)} is missing; run `{command}` "
                                    f"first.")
    cifar = _load(os.path.join(docs, "cifar10_table", "results.json"))
    lines = ["## What the paper says, and what this project measured", "",
             "Rendered by `python -m experiments.readme_section` from the JSON the "
             f"experiments wrote under `{docs}/`.", ""]
    claims = claims_part(degradation)
    lines += degradation_part(degradation, docs=docs, claims=claims)
    lines += cifar10_part(cifar, folder=f"{docs}/cifar10_table")
    lines += block_part(blocks, folder=f"{docs}/block_table")
    return "\n".join(lines), claims


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", default=DOCS, help=f"experiments' output folder (default {DOCS})")
    args = parser.parse_args(argv)
    try:
        texts = render(docs=args.docs)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, text in zip(OUTPUTS, texts):
        output = os.path.join(args.docs, name)
        with open(output, "w") as f:
            f.write(text)
        print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
