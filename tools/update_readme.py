"""Regenerates the measured sections of README.md from the code that measures them.

    python tools/update_readme.py                       # model table only
    python tools/update_readme.py --run runs/X          # also the default run's results

Sections sit between `<!-- NAME:begin -->` and `<!-- NAME:end -->` markers;
nothing between them is typed by hand. `--run` copies the run's report.json,
report.md, report.png, train_result.json and training_curve.png into
docs/results/default_run/ and renders the README's results from those files.
"""

import argparse
import json
import os
import re
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

RESULTS = os.path.join(ROOT, "docs", "results", "default_run")
COPIED = ("report.json", "report.md", "report.png", "train_result.json", "qat_result.json",
          "training_curve.png", "config.json", "timing.json")


def replace_section(text, name, body):
    pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"README.md has no <!-- {name}:begin --> ... <!-- {name}:end --> markers.")
    return pattern.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), text)


def results_section() -> str:
    from report.render import render_markdown
    with open(os.path.join(RESULTS, "report.json")) as f:
        report = json.load(f)
    with open(os.path.join(RESULTS, "train_result.json")) as f:
        train_result = json.load(f)
    lines = [f"Float training: test top-1 **{100 * train_result['test_top1']:.2f}%** after "
             f"{train_result['epochs']} epochs in {train_result['seconds']:.0f} s "
             f"({train_result['images_per_second']:.0f} images/s)."]
    timing_path = os.path.join(RESULTS, "timing.json")
    if os.path.exists(timing_path):
        with open(timing_path) as f:
            timing = json.load(f)
        stages = ", ".join(f"{k} {v:.0f} s" for k, v in timing["stages"].items())
        lines.append(f"Whole job: **{timing['total_seconds']:.0f} s** ({stages}).")
    lines += ["", render_markdown(report), "",
              "![accuracy against size and latency](docs/results/default_run/report.png)",
              "![training curve](docs/results/default_run/training_curve.png)"]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="a finished run directory of train.py")
    args = parser.parse_args(argv)
    from resnet_keras.__main__ import render_markdown, summary_rows

    path = os.path.join(ROOT, "README.md")
    with open(path) as f:
        text = f.read()
    text = replace_section(text, "models", render_markdown(summary_rows()))
    if args.run:
        os.makedirs(RESULTS, exist_ok=True)
        for name in COPIED:
            if os.path.exists(os.path.join(args.run, name)):
                shutil.copy(os.path.join(args.run, name), RESULTS)
    paper = os.path.join(ROOT, "docs", "experiments", "README_section.md")
    if os.path.exists(paper):  # written by `python -m experiments.readme_section` from the JSON
        with open(paper) as f:
            text = replace_section(text, "paper", f.read())
    if os.path.exists(os.path.join(RESULTS, "report.json")):
        text = replace_section(text, "results", results_section())
    with open(path, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
