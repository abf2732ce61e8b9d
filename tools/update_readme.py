"""Regenerates the measured sections of README.md from the code that measures them.

    python -m tools.update_readme                                  # render what is committed
    python -m tools.update_readme --run runs/X                     # copy the default run first
    python -m tools.update_readme --run runs/Y --as fashion_mnist  # or the Fashion-MNIST run

Sections sit between `<!-- NAME:begin -->` and `<!-- NAME:end -->` markers;
nothing between them is typed by hand. `--run` copies a run's JSON, report and
figures into docs/results/<name>/ (laid out as a run directory); each
committed run renders into its own README section.
"""

import argparse
import os
import shutil
import sys

from rundir import RunDir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Committed runs: {name under docs/results/: README section}.
RUNS = {"default_run": "results", "fashion_mnist": "results-fashion-mnist"}
COPIED = ("report_json", "report_markdown", "report_chart", "train_result", "qat_result",
          "training_curve", "config", "timing", "state")


def committed(name):
    """The committed copy of run `name`, laid out as a run directory."""
    return RunDir(os.path.join(ROOT, "docs", "results", name))


def models_section(rows) -> str:
    """The model table from `resnet_keras.__main__.summary_rows` (or its `--json`)."""
    from report.markdown import cell, md_table

    return md_table(
        ["model", "variant", "input", "params", "trainable", "multiply-adds", "depth"],
        [[r["name"], r["variant"], "x".join(str(d) for d in r["input_shape"][:2]),
          cell(r["params"], ","), cell(r["trainable_params"], ","),
          cell(r["macs"] / 1e9, ".3f", " G"), r["depth"]] for r in rows],
        align="lllrrrr")


def results_section(run) -> str:
    """A committed run's training line, stage times and report, from its JSON."""
    from report.render import render_markdown

    report = run.read_json(run.report_json)
    train_result = run.read_json(run.train_result)
    lines = [f"Float training: test top-1 **{100 * train_result['test_top1']:.2f}%** after "
             f"{train_result['epochs']} epochs in {train_result['seconds']:.0f} s "
             f"({train_result['images_per_second']:.0f} images/s)."]
    if os.path.exists(run.timing):
        timing = run.read_json(run.timing)
        stages = ", ".join(f"{k} {v:.0f} s" for k, v in timing["stages"].items())
        done = run.read_json(run.state)["completed"] if os.path.exists(run.state) else []
        line = (f"Whole job: **{timing['total_seconds']:.0f} s** ({stages})"
                if set(done) <= set(timing["stages"]) else f"Stage times: {stages}")
        if timing.get("peak_rss_mb"):
            line += f"; peak memory {max(timing['peak_rss_mb'].values()):,.0f} MB"
        lines.append(line + ".")
    folder = os.path.relpath(run.root, ROOT)
    lines += ["", render_markdown(report), "",
              f"![accuracy against size and latency]({folder}/report.png)",
              f"![training curve]({folder}/training_curve.png)"]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="a finished run directory of train.py to commit")
    parser.add_argument("--as", dest="name", default="default_run", choices=list(RUNS),
                        help="which committed run it becomes (default %(default)s)")
    args = parser.parse_args(argv)
    from report.markdown import replace_section
    from resnet_keras.__main__ import summary_rows

    path = os.path.join(ROOT, "README.md")
    with open(path) as f:
        text = f.read()
    text = replace_section(text, "models", models_section(summary_rows()))
    if args.run:
        run, target = RunDir(args.run), committed(args.name)
        os.makedirs(target.root, exist_ok=True)
        for name in COPIED:
            if os.path.exists(getattr(run, name)):
                shutil.copy(getattr(run, name), getattr(target, name))
    paper = os.path.join(ROOT, "docs", "experiments", "README_section.md")
    if os.path.exists(paper):  # written by `python -m experiments.readme_section` from the JSON
        with open(paper) as f:
            text = replace_section(text, "paper", f.read())
    for name, section in RUNS.items():
        if os.path.exists(committed(name).report_json):
            text = replace_section(text, section, results_section(committed(name)))
    with open(path, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
