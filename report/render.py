"""Renders the quantized-accuracy report: report.json first, Markdown and a chart from it.

Every number shown comes from the report dict that the measuring code filled
(docs/report_json.md); the verdict renders report.json's `decision`
(report/decide.py), computed on the fly for reports written before it existed.
Accuracies (`top1`, `top5`, `agreement`) are fractions in [0, 1];
`top1_delta_points` is 100 * (top1 - Keras float top1), in percentage points.

    >>> paths = render.write(report_dict, "runs/resnet20_digits")
    >>> print(render.render_table(report_dict))
"""

import json
import math
import pathlib

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from export.edgetpu import COMPILER_VERSION
from report.decide import (
    VERDICT_POINTS,
    check,
    decide,
    delta,
    edgetpu_status,
    entries,
    latency,
    reference,
    size_ratio,
)
from report.markdown import DASH, cell, md_table
from rundir import RunDir
from rundir.files import replacing, write_json

# ---------------------------------------------------------------- cells


def _pct(value):
    return cell(None if value is None else 100.0 * value, ".2f")


def _kib(size_bytes):
    return cell(None if size_bytes is None else size_bytes / 1024.0, ".1f")


def _decision(report):
    """The saved decision; reports written before it existed are decided now."""
    return report.get("decision") or decide(report)


def _edgetpu_cell(status):
    if status is None:
        return DASH
    if status["confirmed_by"] == "compiler":
        mapped = f" (compiler: {status['mapped_ops']}/{status['compiler_total_ops']} ops)"
    else:
        mapped = " (rules)"
    if status["compatible"]:
        return "yes" + mapped
    first = status["first_cpu_op"]
    if first is not None:
        return f"no: #{first['index']} {first['op']}" + mapped
    return "no" + mapped


def _row(entry, report):
    file = entry.get("file")
    return [
        entry["variant"],
        pathlib.Path(file).name if file else DASH,
        _kib(entry.get("size_bytes")),
        _pct(size_ratio(entry, report)),
        _pct(entry.get("top1")),
        _pct(entry.get("top5")),
        cell(delta(entry, reference(report)), "+.2f"),
        _pct(entry.get("agreement")),
        cell(latency(entry, "1_thread"), ".2f"),
        cell(latency(entry, "all_threads"), ".2f"),
        _edgetpu_cell(edgetpu_status(entry.get("edgetpu"))),
    ]


_HEADERS = ["variant", "file", "size KiB", "size vs float32 %", "top-1 %", "top-5 %",
            "Δ top-1 (points)", "agreement %", "latency 1 thread (ms)",
            "latency all threads (ms)", "Edge TPU"]


# ---------------------------------------------------------------- verdict


def verdict(report):
    """The one-paragraph verdict, rendered from the report's `decision`.

    Args:
        report: the report dict; without a `decision` (reports written before
            it existed), `decide(report)` with the default budget.

    Returns:
        A str paragraph.
    """
    check(report)
    decision = _decision(report)
    ref = decision["reference"]
    if ref is None:
        return ("No float reference (keras_float or float32) in this report, so the int8 "
                "loss cannot be judged.")
    ref_name = "Keras float" if ref["variant"] == "keras_float" else "float32 TFLite"
    threshold = decision["threshold_points"]
    sentences = []
    if decision["num_test"]:
        sentences.append(f"On {decision['num_test']} test images one image is "
                         f"{decision['one_image_points']:.2f} points and the standard error "
                         f"of a top-1 near {100 * ref['top1']:.2f}% is "
                         f"±{decision['standard_error_points']:.2f} points.")
    for candidate in decision["candidates"]:
        text = (f"{candidate['variant']} scores {100 * candidate['top1']:.2f}% top-1, "
                f"{candidate['delta_points']:+.2f} points against {ref_name} "
                f"({100 * ref['top1']:.2f}%), "
                f"{'within' if candidate['within_budget'] else 'outside'} the "
                f"{threshold:g}-point budget")
        if candidate["agreement"] is not None:
            text += f", and agrees with it on {100 * candidate['agreement']:.2f}% of images"
        if candidate["within_noise"]:
            text += "; a difference this small (≤ 2 standard errors) is noise on this test set"
        sentences.append(text + ".")
    qat = decision.get("qat")
    if qat:
        sentences.append(_qat_sentence(qat))
    selective = decision["selective"]
    if selective:
        kept = selective["layers_in_float"]
        sentences.append(f"Keeping {kept} layer{'s' if kept != 1 else ''} in float "
                         f"(selective int8) gives {selective['delta_points']:+.2f} points at "
                         f"{_kib(selective['size_bytes'])} KiB, but a mixed-precision "
                         f"model cannot run on the Edge TPU.")
    chosen = decision["chosen"]
    if chosen is None:
        sentences.append("Verdict: no int8 variant was measured, so int8 cannot be judged.")
        return " ".join(sentences)
    if decision["ship"]:
        text = f"Verdict: int8 is good enough; ship {decision['ship']}"
        if chosen["size_vs_float32"] is not None:
            text += f" at {100 * chosen['size_vs_float32']:.1f}% of the float32 file's size"
        if chosen["speedup_vs_float32"]:
            text += f", {chosen['speedup_vs_float32']:.2f}x the float32 speed on all threads"
    else:
        text = (f"Verdict: int8 is not good enough by this rule; the best int8 variant, "
                f"{chosen['variant']}, loses {-chosen['delta_points']:.2f} points")
        fallback = decision["fallback"]
        if fallback:
            text += (f". {fallback['variant']} ({fallback['delta_points']:+.2f} points, "
                     f"{_kib(fallback['size_bytes'])} KiB) is the Android alternative")
        if decision["next_step"]:
            text += (f"; quantization-aware training ({decision['next_step']}) is the next "
                     f"thing to try")
    sentences += [text + ".", _edgetpu_sentence(chosen["variant"], chosen["edgetpu"])]
    return " ".join(sentences)


def _qat_sentence(qat):
    epochs = (f"{qat['epochs']} more epoch{'s' if qat['epochs'] != 1 else ''}"
              if qat["epochs"] is not None else "more epochs")
    text = (f"QAT fine-tuned the float model {epochs}: its Keras model (fake-quantized) "
            f"scores {100 * qat['keras_qat_top1']:.2f}% ({qat['keras_qat_delta_points']:+.2f} "
            f"points against Keras float)")
    if qat["conversion_agreement"] is not None:
        text += (f", and the int8_qat file agrees with it on "
                 f"{100 * qat['conversion_agreement']:.2f}% of images")
    if qat["over_int8_points"] is not None:
        text += (f"; int8_qat is {qat['over_int8_points']:+.2f} points against int8 PTQ, "
                 + ("within the noise: QAT's gain is not shown on this test set"
                    if qat["within_noise"] else "beyond 2 standard errors"))
    return text + "."


def _edgetpu_sentence(variant, status):
    if status is None:
        return f"{variant} was not checked for the Edge TPU."
    if status["confirmed_by"] == "compiler":
        source = (f"edgetpu_compiler {status['compiler_version'] or ''} mapped "
                  f"{status['mapped_ops']} of {status['compiler_total_ops']} ops"
                  ).replace("  ", " ")
    else:
        source = "by the documented rules only; edgetpu_compiler did not run to confirm"
    if status["compatible"]:
        return f"Its file maps fully onto the Edge TPU ({source})."
    first = status["first_cpu_op"]
    if first is not None:
        return (f"Its file is not Edge TPU compatible: from op #{first['index']} "
                f"({first['op']}: {first['reason']}) on, the model runs on the CPU ({source}).")
    return f"Its file is not Edge TPU compatible ({source})."


# ---------------------------------------------------------------- renderers


def _header(report):
    machine = report.get("machine") or {}
    title = f"# {report.get('model', 'model')} on {report.get('dataset', '?')}: quantized accuracy"
    facts = []
    if report.get("num_test") is not None:
        facts.append(f"{report['num_test']} test images")
    if report.get("num_classes") is not None:
        facts.append(f"{report['num_classes']} classes")
    if report.get("created"):
        facts.append(f"measured {report['created']}")
    if machine:
        facts.append(f"on {machine.get('platform', '?')} with {machine.get('cpu_count', '?')} CPUs")
    return title, ", ".join(facts)


def _xnnpack_section(report):
    lines = []
    for entry in report["variants"]:
        x = entry.get("xnnpack")
        if not x:
            continue
        left = ", ".join(f"{op} x{n}" for op, n in x["not_delegated"].items())
        lines.append(f"- **{entry['variant']}**: {x['delegated']} of {x['ops']} ops on XNNPACK "
                     f"in {x['partitions']} partition{'s' if x['partitions'] != 1 else ''}"
                     + (f"; LiteRT's own kernels run {left}" if left else ""))
    return lines


def _edgetpu_section(report):
    lines = []
    for entry in report["variants"]:
        edgetpu = entry.get("edgetpu")
        status = edgetpu_status(edgetpu)
        if status is None:
            continue
        total = status["total_ops"]
        first = status["first_cpu_op"]
        head = f"- **{entry['variant']}**: "
        if status["compatible"]:
            head += f"compatible, {total} of {total} ops by the documented rules"
        elif first is not None:
            head += (f"not compatible; op #{first['index']} and the "
                     f"{total - first['index'] - 1} after it would run on the CPU, "
                     f"starting with {first['op']}: {first['reason']}")
        else:
            head += ("not compatible: the documented rules pass, the compiler did not "
                     "map every op")
        lines.append(head)
        broken = [f"#{op['index']} {op['op']}" for op in edgetpu.get("ops") or []
                  if not op.get("supported")]
        if len(broken) > 1:
            shown = ", ".join(broken[:8]) + (f", ... ({len(broken)} in all)"
                                             if len(broken) > 8 else "")
            lines.append(f"  - ops that break the rules: {shown}")
        compiler = edgetpu.get("compiler")
        if compiler is None:
            lines.append("  - compiler: not run")
        elif compiler.get("ran"):
            lines.append(f"  - compiler {compiler.get('version') or ''}: "
                         f"{'ok' if compiler.get('ok') else 'failed'}, "
                         f"{cell(compiler.get('mapped_ops'), 'd')} of "
                         f"{cell(compiler.get('total_ops'), 'd')} ops mapped"
                         + (f", `{pathlib.Path(compiler['path']).name}`"
                            if compiler.get("path") else ""))
        else:
            lines.append(f"  - compiler: not available ({compiler.get('reason', '')})")
        lines += [f"  - {note}" for note in edgetpu.get("notes") or []]
        versions = _op_versions(edgetpu.get("ops") or [])
        if versions:
            lines.append(f"  - op versions against edgetpu_compiler {COMPILER_VERSION}'s limits: "
                         f"{versions}")
    return lines


def _op_versions(ops):
    """`CONV_2D v3 (max 5)` per distinct op and version; refused ones first, in bold."""
    seen = {}
    for op in ops:
        if "max_version" in op:
            seen.setdefault((op["op"], op["version"]), op)
    cells = [(not op.get("version_refused"),
              f"{name} v{version} (max {cell(op['max_version'], 'd')})")
             for (name, version), op in seen.items()]
    return ", ".join(f"**{text}: refused**" if not ok else text
                     for ok, text in sorted(cells, key=lambda c: c[0]))


def _diagnosis_section(report, ref):
    diagnosis = report.get("diagnosis")
    if not diagnosis:
        return ["## Per-layer diagnosis", "", "No per-layer diagnosis in this run."]
    lines = ["## Per-layer diagnosis (int8 post-training quantization)", "",
             "Error of each quantized layer's output against float on the same inputs, "
             "in quantization steps (RMSE / scale); rounding alone gives 0.29.", ""]
    layers = diagnosis.get("layers") or []
    if layers:
        rows = []
        for layer in layers:
            name = ", ".join(layer.get("keras_layers") or []) or layer.get("tensor_name", "")
            rows.append([cell(layer.get("rank")), f"`{name}`", cell(layer.get("op_name")),
                         cell(layer.get("rmse_per_scale"), ".3f"),
                         cell(layer.get("max_abs_error"), ".4g"),
                         cell(layer.get("scale"), ".4g"),
                         cell(layer.get("num_elements"), "d")])
        lines.append(md_table(["rank", "layer", "op", "RMSE / scale", "max abs error",
                               "scale", "elements"], rows, align="rllrrrr"))
    else:
        lines.append("No layer statistics.")
    selective = diagnosis.get("selective")
    lines += ["", "### Selective int8 (worst layers kept in float)", ""]
    if not selective:
        lines.append("Not run.")
        return lines
    if selective.get("applied") is False:
        lines.append(f"Not applied: {selective.get('reason') or 'below the threshold'}.")
        return lines
    denylist = selective.get("denylist") or []
    lines.append(f"Kept in float: {', '.join(f'`{name}`' for name in denylist) or DASH}.")
    lines.append("")
    int8 = entries(report).get("int8") or {}
    lines.append(md_table(
        ["model", "size KiB", "top-1 %", "top-5 %", "Δ top-1 (points)", "agreement %"],
        [["int8", _kib(int8.get("size_bytes")), _pct(int8.get("top1")), _pct(int8.get("top5")),
          cell(delta(int8, ref) if int8 else None, "+.2f"), _pct(int8.get("agreement"))],
         ["selective int8", _kib(selective.get("size_bytes")), _pct(selective.get("top1")),
          _pct(selective.get("top5")), cell(delta(selective, ref), "+.2f"),
          _pct(selective.get("agreement"))]],
        align="lrrrrr"))
    return lines


def render_markdown(report, *, chart=None):
    """The report as Markdown: variants table, Edge TPU, diagnosis, verdict.

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
    title, facts = _header(report)
    lines = [title, ""]
    if facts:
        lines += [facts + ".", ""]
    lines += ["## Variants", "",
              md_table(_HEADERS, [_row(e, report) for e in report["variants"]],
                       align="llrrrrrrrrl"), ""]
    lines.append(f"Δ top-1 is against {ref['variant'] if ref else 'no reference'}; "
                 "agreement is the share of test images where the variant's top-1 class "
                 "equals the Keras float model's; latency is the median of repeated "
                 "single-image runs, every file timed in the same turns.")
    if chart:
        lines += ["", f"![accuracy against size and latency]({chart})"]
    edgetpu = _edgetpu_section(report)
    if edgetpu:
        lines += ["", "## Edge TPU", ""] + edgetpu
    cpu = _xnnpack_section(report)
    if cpu:
        lines += ["", "## CPU: ops on XNNPACK", "",
                  "LiteRT hands supported ops to its XNNPACK delegate; the others run on its "
                  "own, slower kernels, and each change between the two cuts the graph.", ""]
        lines += cpu
    lines += [""] + _diagnosis_section(report, ref)
    lines += ["", "## Verdict", "", verdict(report), ""]
    return "\n".join(lines)


def render_table(report):
    """The variants table as plain text for a terminal.

    Args:
        report: the report dict.

    Returns:
        The table as a str, one line per variant under a header.
    """
    check(report)
    headers = ["variant", "KiB", "vs f32 %", "top-1 %", "top-5 %", "Δ pts", "agree %",
               "1T ms", "NT ms", "Edge TPU"]
    rows = [[c for i, c in enumerate(_row(e, report)) if i != 1] for e in report["variants"]]
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]

    def line(cells):
        return "  ".join(str(c).ljust(w) if i in (0, len(cells) - 1) else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def render_chart(report, path):
    """Plots top-1 against file size and against latency, one labelled point per variant.

    Args:
        report: the report dict; the budget band below the float reference is
            its `decision`'s (decided with the default budget when missing).
        path: str or Path of the PNG to write.

    Returns:
        The Path written.
    """
    check(report)
    decision = _decision(report)
    ref, threshold_points = decision["reference"], decision["threshold_points"]
    figure = Figure(figsize=(11, 4.5), dpi=110)
    FigureCanvasAgg(figure)
    panels = [("file size (KiB)", lambda e: None if e.get("size_bytes") is None
               else e["size_bytes"] / 1024.0)]
    panels.append(("latency, median ms (all threads; 1 thread where missing)",
                   lambda e: latency(e, "all_threads") or latency(e, "1_thread")))
    for i, (xlabel, x_of) in enumerate(panels, start=1):
        axes = figure.add_subplot(1, 2, i)
        shown, missing = [], []
        for entry in report["variants"]:
            x = x_of(entry)
            if x is None or entry.get("top1") is None:
                missing.append(entry["variant"])
                continue
            shown.append(x)
            axes.scatter([x], [100 * entry["top1"]], s=40, zorder=3)
            axes.annotate(entry["variant"], (x, 100 * entry["top1"]), xytext=(5, 4),
                          textcoords="offset points", fontsize=9)
        if ref is not None:
            top = 100 * ref["top1"]
            axes.axhline(top, color="gray", linestyle="--", linewidth=1,
                         label=f"{ref['variant']} {top:.2f}%")
            axes.axhspan(top - threshold_points, top, color="green", alpha=0.08,
                         label=f"verdict budget: {threshold_points:g} point(s)")
            axes.legend(loc="lower right", fontsize=8)
        axes.margins(x=0.15, y=0.15)  # room for the labels of the extreme points
        if shown and max(shown) / max(min(shown), 1e-9) > 20:
            axes.set_xscale("log")
        if missing:
            axes.text(0.01, 0.01, "not shown: " + ", ".join(missing), fontsize=7,
                      transform=axes.transAxes, color="gray")
        axes.set_xlabel(xlabel)
        axes.set_ylabel("top-1 accuracy (%)")
        axes.grid(True, alpha=0.3)
    figure.suptitle(f"{report.get('model', 'model')} on {report.get('dataset', '?')}")
    figure.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


# ---------------------------------------------------------------- files


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


def write(report, run_dir, *, threshold_points=VERDICT_POINTS):
    """Decides, writes report.json, then renders report.md and report.png from it.

    Args:
        report: the report dict. Its `decision` is set here, in place, to
            `decide(report, threshold_points=...)`, so that the caller's dict
            is what report.json holds.
        run_dir: a `rundir.RunDir`, or the run's folder (created if missing).
        threshold_points: float, the top-1 budget of the decision, in points.

    Returns:
        A dict of Paths: `json`, `markdown`, `chart`.

    Raises:
        ValueError: a malformed report, or a NaN/infinite number (not valid
            JSON; the message names where).
    """
    report["decision"] = decide(report, threshold_points=threshold_points)
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
