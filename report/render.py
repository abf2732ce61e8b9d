"""Renders the quantized-accuracy report: report.json first, Markdown and a chart from it.

Every number shown comes from the report dict that the measuring code filled
(docs/report_json.md); the verdict is computed from those numbers.
Accuracies (`top1`, `top5`, `agreement`) are fractions in [0, 1];
`top1_delta_points` is 100 * (top1 - Keras float top1), in percentage points.

    >>> paths = report.write(report_dict, "runs/resnet20_digits")
    >>> print(report.render_table(report_dict))
"""

import json
import math
import pathlib

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# The budget the verdict applies: int8 is "good enough" when it loses at most
# this many top-1 points against the Keras float model.
VERDICT_POINTS = 1.0
REFERENCES = ("keras_float", "float32")
INT8_VARIANTS = ("int8", "int8_qat")
_DASH = "—"
_THREADS = (("1_thread", "1 thread"), ("all_threads", "all threads"))
_FRACTIONS = ("top1", "top5", "agreement")


# ---------------------------------------------------------------- validation


def _check(report):
    if not isinstance(report, dict) or not isinstance(report.get("variants"), list) \
            or not report["variants"]:
        raise ValueError("report must be a dict with a non-empty 'variants' list "
                         "(see docs/report_json.md).")
    for entry in report["variants"]:
        if "variant" not in entry or "top1" not in entry:
            raise ValueError(f"each variant needs 'variant' and 'top1', got keys "
                             f"{sorted(entry)}.")
        for field in _FRACTIONS:
            value = entry.get(field)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{entry['variant']}: {field}={value!r} is not a fraction "
                                 f"in [0, 1]; report accuracies as fractions, not percent.")


def _entries(report):
    return {entry["variant"]: entry for entry in report["variants"]}


def _reference(report):
    entries = _entries(report)
    return next((entries[name] for name in REFERENCES if name in entries), None)


def _delta(entry, reference):
    if entry.get("top1_delta_points") is not None:
        return entry["top1_delta_points"]
    if reference is None or entry.get("top1") is None or reference.get("top1") is None:
        return None
    return 100.0 * (entry["top1"] - reference["top1"])


def _latency(entry, threads):
    stats = (entry.get("latency_ms") or {}).get(threads)
    return stats.get("median_ms") if stats else None


def _size_ratio(entry, report):
    float32 = _entries(report).get("float32")
    if not float32 or not float32.get("size_bytes") or entry.get("size_bytes") is None:
        return None
    return entry["size_bytes"] / float32["size_bytes"]


# ---------------------------------------------------------------- formatting


def _fmt(value, spec, suffix=""):
    return _DASH if value is None else f"{value:{spec}}{suffix}"


def _pct(value):
    return _fmt(None if value is None else 100.0 * value, ".2f")


def _kib(size_bytes):
    return _fmt(None if size_bytes is None else size_bytes / 1024.0, ".1f")


def _edgetpu_cell(edgetpu):
    if not edgetpu:
        return _DASH
    compiler = edgetpu.get("compiler") or {}
    if compiler.get("ran") and compiler.get("mapped_ops") is not None:
        mapped = f" (compiler: {compiler['mapped_ops']}/{compiler['total_ops']} ops)"
    else:
        mapped = " (rules)"
    if edgetpu.get("compatible"):
        return "yes" + mapped
    first = edgetpu.get("first_cpu_op")
    ops = edgetpu.get("ops") or []
    if first is not None and first < len(ops):
        return f"no: #{first} {ops[first]['op']}" + mapped
    return "no" + mapped


def _row(entry, report):
    reference = _reference(report)
    file = entry.get("file")
    return [
        entry["variant"],
        pathlib.Path(file).name if file else _DASH,
        _kib(entry.get("size_bytes")),
        _pct(_size_ratio(entry, report)),
        _pct(entry.get("top1")),
        _pct(entry.get("top5")),
        _fmt(_delta(entry, reference), "+.2f"),
        _pct(entry.get("agreement")),
        _fmt(_latency(entry, "1_thread"), ".2f"),
        _fmt(_latency(entry, "all_threads"), ".2f"),
        _edgetpu_cell(entry.get("edgetpu")),
    ]


_HEADERS = ["variant", "file", "size KiB", "size vs float32 %", "top-1 %", "top-5 %",
            "Δ top-1 (points)", "agreement %", "latency 1 thread (ms)",
            "latency all threads (ms)", "Edge TPU"]


def _md_table(headers, rows, align):
    def cell(text):
        return str(text).replace("|", "\\|")
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- verdict


def verdict(report, *, threshold_points=VERDICT_POINTS):
    """The one-paragraph verdict, computed from the report's numbers.

    Args:
        report: the report dict.
        threshold_points: float, the top-1 points int8 may lose against the
            Keras float model and still be "good enough".

    Returns:
        A str paragraph.
    """
    _check(report)
    entries = _entries(report)
    reference = _reference(report)
    if reference is None:
        return ("No float reference (keras_float or float32) in this report, so the int8 "
                "loss cannot be judged.")
    ref_name = "Keras float" if reference["variant"] == "keras_float" else "float32 TFLite"
    sentences = []
    n = report.get("num_test")
    se = None
    if n:
        p = reference["top1"]
        se = 100.0 * math.sqrt(max(p * (1.0 - p), 0.0) / n)
        sentences.append(f"On {n} test images one image is {100.0 / n:.2f} points and the "
                         f"standard error of a top-1 near {100 * p:.2f}% is "
                         f"±{se:.2f} points.")
    candidates = [entries[v] for v in INT8_VARIANTS if v in entries]
    for entry in candidates:
        delta = _delta(entry, reference)
        within = delta is not None and delta >= -threshold_points
        text = (f"{entry['variant']} scores {100 * entry['top1']:.2f}% top-1, "
                f"{delta:+.2f} points against {ref_name} ({100 * reference['top1']:.2f}%), "
                f"{'within' if within else 'outside'} the {threshold_points:g}-point budget")
        if entry.get("agreement") is not None:
            text += f", and agrees with it on {100 * entry['agreement']:.2f}% of images"
        if se and delta is not None and abs(delta) <= 2 * se:
            text += f"; a difference this small (≤ 2 standard errors) is noise on this test set"
        sentences.append(text + ".")
    selective = (report.get("diagnosis") or {}).get("selective")
    if selective and selective.get("top1") is not None:
        delta = _delta(selective, reference)
        kept = len(selective.get("denylist") or [])
        sentences.append(f"Keeping {kept} layer{'s' if kept != 1 else ''} in float "
                         f"(selective int8) gives {delta:+.2f} points at "
                         f"{_kib(selective.get('size_bytes'))} KiB, but a mixed-precision "
                         f"model cannot run on the Edge TPU.")
    good = [e for e in candidates
            if _delta(e, reference) is not None and _delta(e, reference) >= -threshold_points]
    if not candidates:
        sentences.append("Verdict: no int8 variant was measured, so int8 cannot be judged.")
    elif good:
        best = max(good, key=lambda e: e["top1"])
        text = f"Verdict: int8 is good enough; ship {best['variant']}"
        ratio = _size_ratio(best, report)
        if ratio is not None:
            text += f" at {100 * ratio:.1f}% of the float32 file's size"
        float32 = entries.get("float32")
        fast = _latency(best, "all_threads")
        slow = _latency(float32, "all_threads") if float32 else None
        if fast and slow:
            text += f", {slow / fast:.2f}x the float32 speed on all threads"
        sentences.append(text + ".")
        sentences.append(_edgetpu_sentence(best))
    else:
        best = max(candidates, key=lambda e: e["top1"])
        text = (f"Verdict: int8 is not good enough by this rule; the best int8 variant, "
                f"{best['variant']}, loses {-_delta(best, reference):.2f} points")
        fp16 = entries.get("fp16")
        if fp16 and _delta(fp16, reference) is not None:
            text += (f". fp16 ({_delta(fp16, reference):+.2f} points, "
                     f"{_kib(fp16.get('size_bytes'))} KiB) is the Android alternative")
        if "int8_qat" not in entries:
            text += "; quantization-aware training (int8_qat) is the next thing to try"
        sentences.append(text + ".")
        sentences.append(_edgetpu_sentence(best))
    return " ".join(s for s in sentences if s)


def _edgetpu_sentence(entry):
    edgetpu = entry.get("edgetpu")
    if not edgetpu:
        return f"{entry['variant']} was not checked for the Edge TPU."
    compiler = edgetpu.get("compiler") or {}
    if compiler.get("ran") and compiler.get("mapped_ops") is not None:
        source = (f"edgetpu_compiler {compiler.get('version') or ''} mapped "
                  f"{compiler['mapped_ops']} of {compiler['total_ops']} ops").replace("  ", " ")
    else:
        source = "by the documented rules only; edgetpu_compiler did not run to confirm"
    if edgetpu.get("compatible"):
        return f"Its file maps fully onto the Edge TPU ({source})."
    first = edgetpu.get("first_cpu_op")
    ops = edgetpu.get("ops") or []
    if first is not None and first < len(ops):
        op = ops[first]
        return (f"Its file is not Edge TPU compatible: from op #{first} ({op['op']}: "
                f"{op['reason']}) on, the model runs on the CPU ({source}).")
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
        if not edgetpu:
            continue
        total = edgetpu.get("total_ops", len(edgetpu.get("ops") or []))
        head = f"- **{entry['variant']}**: "
        if edgetpu.get("compatible"):
            head += f"compatible, {total} of {total} ops by the documented rules"
        else:
            first = edgetpu.get("first_cpu_op")
            ops = edgetpu.get("ops") or []
            if first is not None and first < len(ops):
                head += (f"not compatible; op #{first} and the {total - first - 1} after it "
                         f"would run on the CPU, starting with {ops[first]['op']}: "
                         f"{ops[first]['reason']}")
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
                         f"{_fmt(compiler.get('mapped_ops'), 'd')} of "
                         f"{_fmt(compiler.get('total_ops'), 'd')} ops mapped"
                         + (f", `{pathlib.Path(compiler['path']).name}`"
                            if compiler.get("path") else ""))
        else:
            lines.append(f"  - compiler: not available ({compiler.get('reason', '')})")
        lines += [f"  - {note}" for note in edgetpu.get("notes") or []]
    return lines


def _diagnosis_section(report, reference):
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
            rows.append([layer.get("rank", _DASH), f"`{name}`", layer.get("op_name", _DASH),
                         _fmt(layer.get("rmse_per_scale"), ".3f"),
                         _fmt(layer.get("max_abs_error"), ".4g"),
                         _fmt(layer.get("scale"), ".4g"),
                         _fmt(layer.get("num_elements"), "d")])
        lines.append(_md_table(["rank", "layer", "op", "RMSE / scale", "max abs error",
                                "scale", "elements"], rows, "rllrrrr"))
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
    lines.append(f"Kept in float: {', '.join(f'`{name}`' for name in denylist) or _DASH}.")
    lines.append("")
    int8 = _entries(report).get("int8") or {}
    lines.append(_md_table(
        ["model", "size KiB", "top-1 %", "top-5 %", "Δ top-1 (points)", "agreement %"],
        [["int8", _kib(int8.get("size_bytes")), _pct(int8.get("top1")), _pct(int8.get("top5")),
          _fmt(_delta(int8, reference) if int8 else None, "+.2f"), _pct(int8.get("agreement"))],
         ["selective int8", _kib(selective.get("size_bytes")), _pct(selective.get("top1")),
          _pct(selective.get("top5")), _fmt(_delta(selective, reference), "+.2f"),
          _pct(selective.get("agreement"))]],
        "lrrrrr"))
    return lines


def render_markdown(report, *, chart=None, threshold_points=VERDICT_POINTS):
    """The report as Markdown: variants table, Edge TPU, diagnosis, verdict.

    Args:
        report: the report dict (docs/report_json.md).
        chart: str, a chart file name to embed (relative to the .md), or None.
        threshold_points: float, the verdict's top-1 budget in points.

    Returns:
        The Markdown text.

    Raises:
        ValueError: a malformed report, or accuracies given in percent.
    """
    _check(report)
    reference = _reference(report)
    title, facts = _header(report)
    lines = [title, ""]
    if facts:
        lines += [facts + ".", ""]
    lines += ["## Variants", "",
              _md_table(_HEADERS, [_row(e, report) for e in report["variants"]],
                        "llrrrrrrrrl"), ""]
    lines.append(f"Δ top-1 is against {reference['variant'] if reference else 'no reference'}; "
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
    lines += [""] + _diagnosis_section(report, reference)
    lines += ["", "## Verdict", "", verdict(report, threshold_points=threshold_points), ""]
    return "\n".join(lines)


def render_table(report):
    """The variants table as plain text for a terminal.

    Args:
        report: the report dict.

    Returns:
        The table as a str, one line per variant under a header.
    """
    _check(report)
    headers = ["variant", "KiB", "vs f32 %", "top-1 %", "top-5 %", "Δ pts", "agree %",
               "1T ms", "NT ms", "Edge TPU"]
    rows = [[c for i, c in enumerate(_row(e, report)) if i != 1] for e in report["variants"]]
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]
    def line(cells):
        return "  ".join(str(c).ljust(w) if i in (0, len(cells) - 1) else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def render_chart(report, path, *, threshold_points=VERDICT_POINTS):
    """Plots top-1 against file size and against latency, one labelled point per variant.

    Args:
        report: the report dict.
        path: str or Path of the PNG to write.
        threshold_points: float, the budget drawn below the float reference.

    Returns:
        The Path written.
    """
    _check(report)
    reference = _reference(report)
    figure = Figure(figsize=(11, 4.5), dpi=110)
    FigureCanvasAgg(figure)
    panels = [("file size (KiB)", lambda e: None if e.get("size_bytes") is None
               else e["size_bytes"] / 1024.0)]
    panels.append(("latency, median ms (all threads; 1 thread where missing)",
                   lambda e: _latency(e, "all_threads") or _latency(e, "1_thread")))
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
        if reference is not None:
            top = 100 * reference["top1"]
            axes.axhline(top, color="gray", linestyle="--", linewidth=1,
                         label=f"{reference['variant']} {top:.2f}%")
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


def write(report, run_dir):
    """Writes report.json (the dict as is), then report.md and report.png from it.

    Args:
        report: the report dict.
        run_dir: str or Path, the run's folder (created if missing).

    Returns:
        A dict of Paths: `json`, `markdown`, `chart`.

    Raises:
        ValueError: a malformed report, or a NaN/infinite number (not valid
            JSON; the message names where).
    """
    _check(report)
    where = _non_finite(report)
    if where:
        raise ValueError(f"{where} is NaN or infinite; report.json must hold measured, "
                         f"finite numbers (use None for 'not measured').")
    run_dir = pathlib.Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, allow_nan=False, default=_json_default)
    paths = {"json": run_dir / "report.json", "markdown": run_dir / "report.md",
             "chart": run_dir / "report.png"}
    paths["json"].write_text(text + "\n", encoding="utf-8")
    # Render from what was written, so the Markdown and the chart show the JSON.
    data = json.loads(text)
    render_chart(data, paths["chart"])
    paths["markdown"].write_text(render_markdown(data, chart=paths["chart"].name),
                                 encoding="utf-8")
    return paths
