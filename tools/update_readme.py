"""Regenerates the measured sections of README.md from the code that measures them.

    python -m tools.update_readme                       # model table only
    python -m tools.update_readme --run runs/X          # also the default run's results

Sections sit between `<!-- NAME:begin -->` and `<!-- NAME:end -->` markers;
nothing between them is typed by hand. `--run` copies the run's report.json,
report.md, report.png, train_result.json and training_curve.png into
docs/results/default_run/ and renders the README's results from those files.
"""

import argparse
import os
import shutil
import sys

from training.run_dir import RunDir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The committed copy of a run is laid out as a run directory.
RESULTS = RunDir(os.path.join(ROOT, "docs", "results", "default_run"))
COPIED = ("report_json", "report_markdown", "report_chart", "train_result", "qat_result",
          "training_curve", "config", "timing")


def models_section(rows) -> str:
    """The model table from `resnet_keras.__main__.summary_rows` (or its `--json`)."""
    from report.markdown import cell, md_table

    return md_table(
        ["model", "variant", "input", "params", "trainable", "multiply-adds", "depth"],
        [[r["name"], r["variant"], "x".join(str(d) for d in r["input_shape"][:2]),
          cell(r["params"], ","), cell(r["trainable_params"], ","),
          cell(r["macs"] / 1e9, ".3f", " G"), r["depth"]] for r in rows],
        align="lllrrrr")


def results_section() -> str:
    from report.render import render_markdown
    report = RESULTS.read_json(RESULTS.report_json)
    train_result = RESULTS.read_json(RESULTS.train_result)
    lines = [f"Float training: test top-1 **{100 * train_result['test_top1']:.2f}%** after "
             f"{train_result['epochs']} epochs in {train_result['seconds']:.0f} s "
             f"({train_result['images_per_second']:.0f} images/s)."]
    if os.path.exists(RESULTS.timing):
        timing = RESULTS.read_json(RESULTS.timing)
        stages = ", ".join(f"{k} {v:.0f} s" for k, v in timing["stages"].items())
        lines.append(f"Whole job: **{timing['total_seconds']:.0f} s** ({stages}).")
    folder = os.path.relpath(RESULTS.root, ROOT)
    lines += ["", render_markdown(report), "",
              f"![accuracy against size and latency]({folder}/report.png)",
              f"![training curve]({folder}/training_curve.png)"]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="a finished run directory of train.py")
    args = parser.parse_args(argv)
    from report.markdown import replace_section
    from resnet_keras.__main__ import summary_rows

    path = os.path.join(ROOT, "README.md")
    with open(path) as f:
        text = f.read()
    text = replace_section(text, "models", models_section(summary_rows()))
    if args.run:
        run = RunDir(args.run)
        os.makedirs(RESULTS.root, exist_ok=True)
        for name in COPIED:
            if os.path.exists(getattr(run, name)):
                shutil.copy(getattr(run, name), getattr(RESULTS, name))
    paper = os.path.join(ROOT, "docs", "experiments", "README_section.md")
    if os.path.exists(paper):  # written by `python -m experiments.readme_section` from the JSON
        with open(paper) as f:
            text = replace_section(text, "paper", f.read())
    if os.path.exists(RESULTS.report_json):
        text = replace_section(text, "results", results_section())
    with open(path, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
