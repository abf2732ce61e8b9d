"""Regenerates the measured sections of README.md and the docs pages from what measured them.

    python -m tools.update_readme                                  # render what is committed
    python -m tools.update_readme --run runs/X                     # copy the default run first
    python -m tools.update_readme --run runs/Y --as fashion_mnist  # or the Fashion-MNIST run

Sections sit between `<!-- NAME:begin -->` and `<!-- NAME:end -->` markers in
the file `SECTIONS` names; nothing between them is typed by hand. `--run`
copies a run's JSON, report and figures into docs/results/<name>/ (laid out as
a run directory); each committed run renders its decision table into the
README. The documentation site's front page, docs/index.md, is the README with
its links made the site's (`site_links`).
"""

import argparse
import os
import shutil
import sys

from rundir import RunDir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Committed runs: {name under docs/results/: README section}.
RUNS = {"default_run": "results", "fashion_mnist": "results-fashion-mnist"}
# The file each rendered section lives in.
SECTIONS = {"models": "docs/training.md", "paper": "docs/experiments.md",
            "paper-claims": "README.md",
            **{section: "README.md" for section in RUNS.values()}}
# Sections `python -m experiments.readme_section` writes from the experiments' JSON: {section:
# its file under docs/experiments/}.
EXPERIMENT_SECTIONS = {"paper": "README_section.md", "paper-claims": "README_claims.md"}
SITE_INDEX = "docs/index.md"
COPIED = ("report_json", "report_markdown", "report_chart", "train_result", "qat_result",
          "training_curve", "config", "timing", "state")


def committed(name):
    """The committed copy of run `name`, laid out as a run directory."""
    return RunDir(os.path.join(ROOT, "docs", "results", name))


def models_section(rows) -> str:
    """The model table from the rows of `resnet_keras.summary.summary_rows` (or `--json`'s)."""
    from report.markdown import cell, md_table

    return md_table(
        ["model", "variant", "input", "params", "trainable", "multiply-adds", "depth"],
        [[r["name"], r["variant"], "x".join(str(d) for d in r["input_shape"][:2]),
          cell(r["params"], ","), cell(r["trainable_params"], ","),
          cell(r["macs"] / 1e9, ".3f", " G"), r["depth"]] for r in rows],
        align="lllrrrr")


def results_section(run) -> str:
    """A committed run's training line, stage times and per-target decision, from its JSON.

    The full report stays in the run's folder and is linked, not embedded.
    """
    from report.decision_table import render_table

    report = run.read_json(run.report_json)
    train_result = run.read_json(run.train_result)
    folder = os.path.relpath(run.root, ROOT)
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
    lines += ["", f"Which file goes to which device, on {report['num_test']:,} test images "
              f"(the full report, with every file's evidence: [{folder}/report.md]"
              f"({folder}/report.md)):", "", render_table(report["decision"])]
    return "\n".join(lines)


def site_links(text):
    """Markdown written for the repository's root, for a page under docs/: `](docs/x` -> `](x`."""
    return text.replace("](docs/", "](")


def _render(path, sections):
    """Replaces each {section: body} between its markers in the file at `path`."""
    from report.markdown import replace_section

    with open(path) as f:
        text = f.read()
    for name, body in sections.items():
        text = replace_section(text, name, body)
    with open(path, "w") as f:
        f.write(text)
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="a finished run directory of train.py to commit")
    parser.add_argument("--as", dest="name", default="default_run", choices=list(RUNS),
                        help="which committed run it becomes (default %(default)s)")
    args = parser.parse_args(argv)
    from resnet_keras.summary import summary_rows

    if args.run:
        run, target = RunDir(args.run), committed(args.name)
        os.makedirs(target.root, exist_ok=True)
        for name in COPIED:
            if os.path.exists(getattr(run, name)):
                shutil.copy(getattr(run, name), getattr(target, name))
    bodies = {"models": models_section(summary_rows())}
    for section, name in EXPERIMENT_SECTIONS.items():
        path = os.path.join(ROOT, "docs", "experiments", name)
        if os.path.exists(path):
            with open(path) as f:
                bodies[section] = f.read()
    for name, section in RUNS.items():
        if os.path.exists(committed(name).report_json):
            bodies[section] = results_section(committed(name))
    files = {}
    for section, body in bodies.items():
        files.setdefault(SECTIONS[section], {})[section] = body
    for path, sections in files.items():
        if path.startswith("docs/"):
            sections = {name: site_links(body) for name, body in sections.items()}
        _render(os.path.join(ROOT, path), sections)
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    with open(os.path.join(ROOT, SITE_INDEX), "w") as f:
        f.write(site_links(readme))
    return 0


if __name__ == "__main__":
    sys.exit(main())
