"""Renders the quantized-accuracy report: report.json first, Markdown and a chart from it.

Every number shown comes from the report dict that the measuring code filled
(docs/report_json.md); what to ship where, and the verdict, render report.json's
`decision`, which the report stage made (report/decide.py): nothing here decides.
Accuracies (`top1`, `top5`, `agreement`) are fractions in [0, 1];
`top1_delta_points` is 100 * (top1 - Keras float top1), in percentage points.

Which file goes where is report/decision_table.py's, the variants and
per-class tables report/tables.py's, the evidence sections report/evidence.py's,
the int8 verdict report/verdict.py's and the chart report/chart.py's; this
module puts report.md together and writes the files.

    >>> paths = render.write(report_dict, "runs/resnet20_digits")
"""

import json
import math
import pathlib

import numpy as np

from report import decision_table
from report.chart import render_chart
from report.decide import check, reference, saved_decision
from report.evidence import diagnosis_section, edgetpu_section, gpu_section, xnnpack_section
from report.markdown import md_table
from report.tables import HEADERS, paired_section, per_class_section, variant_row
from report.verdict import host_words, verdict
from rundir import RunDir
from rundir.files import replacing, write_json


def _header(report):
    machine = report.get("machine") or {}
    title = f"# {report.get('model', 'model')} on {report.get('dataset', '?')}: quantized accuracy"
    facts = []
    if report.get("num_test") is not None:
        facts.append(f"{report['num_test']:,} test images")
    if report.get("num_classes") is not None:
        facts.append(f"{report['num_classes']} classes")
    if report.get("created"):
        facts.append(f"measured {report['created']}")
    if machine:
        cpu = machine.get("cpu")
        facts.append(f"on {machine.get('platform', '?')} with {machine.get('cpu_count', '?')} CPUs"
                     + (f" ({host_words(cpu)})" if cpu else ""))
    return title, ", ".join(facts)


def render_markdown(report, *, chart=None):
    """The report as Markdown: which file goes where, then the evidence, then the int8 verdict.

    Args:
        report: the report dict (docs/report_json.md); its `decision` gives
            the verdict (decided with the default budget when missing).
        chart: str, a chart file name to embed (relative to the .md), or None.

    Returns:
        The Markdown text.

    Raises:
        ValueError: a malformed report, or accuracies given in percent.
    """
    check(report)
    ref = reference(report)
    decision = saved_decision(report)
    title, facts = _header(report)
    lines = [title, ""]
    if facts:
        lines += [facts + ".", ""]
    lines += decision_table.render_section(decision) + [""]
    lines += ["## Variants", "",
              md_table(HEADERS, [variant_row(e, report) for e in report["variants"]],
                       align="llrrrrrrrrl"), ""]
    lines.append(f"Δ top-1 is against {ref['variant'] if ref else 'no reference'}; "
                 "agreement is the share of test images where the variant's top-1 class "
                 "equals the Keras float model's; latency is the median of repeated "
                 "single-image runs, every file timed in the same turns.")
    if chart:
        lines += ["", f"![accuracy against size and latency; recall change per class]({chart})"]
    edgetpu = edgetpu_section(report)
    if edgetpu:
        lines += ["", "## Edge TPU", ""] + edgetpu
    cpu = xnnpack_section(report)
    if cpu:
        lines += ["", "## CPU: ops on XNNPACK", "",
                  "LiteRT hands supported ops to its XNNPACK delegate; the others run on its "
                  "own, slower kernels, and each change between the two cuts the graph.", ""]
        lines += cpu
    lines += ["", "## Android GPU delegate", ""] + gpu_section(report)
    for section in (paired_section(report, decision), per_class_section(report, decision)):
        if section:
            lines += [""] + section
    lines += [""] + diagnosis_section(report, ref)
    lines += ["", "## Verdict", "", verdict(report), ""]
    return "\n".join(lines)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, pathlib.PurePath):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _non_finite(value, where="report"):
    """The path of the first NaN or infinity inside value, or None."""
    if isinstance(value, dict):
        return next((p for k, v in value.items() if (p := _non_finite(v, f"{where}[{k!r}]"))),
                    None)
    if isinstance(value, (list, tuple)):
        return next((p for i, v in enumerate(value) if (p := _non_finite(v, f"{where}[{i}]"))),
                    None)
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return where
    return None


def write(report, run_dir):
    """Writes report.json, then renders report.md and report.png from it.

    Args:
        report: the report dict, its `decision` made (report/decide.py).
        run_dir: a `rundir.RunDir`, or the run's folder (created if missing).

    Returns:
        A dict of Paths: `json`, `markdown`, `chart`.

    Raises:
        ValueError: a malformed report, one without its decision, or a
            NaN/infinite number (not valid JSON; the message names where).
    """
    saved_decision(report)
    where = _non_finite(report)
    if where:
        raise ValueError(f"{where} is NaN or infinite; report.json must hold measured, "
                         f"finite numbers (use None for 'not measured').")
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    paths = {"json": pathlib.Path(run.report_json),
             "markdown": pathlib.Path(run.report_markdown),
             "chart": pathlib.Path(run.report_chart)}
    write_json(paths["json"], report, allow_nan=False, default=_json_default)
    # Render from what was written, so the Markdown and the chart show the JSON.
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    render_chart(data, paths["chart"])
    with replacing(paths["markdown"]) as partial:
        pathlib.Path(partial).write_text(render_markdown(data, chart=paths["chart"].name),
                                         encoding="utf-8")
    return paths
