"""Renders the quantized-accuracy report: report.json first, Markdown and a chart from it.

Every number shown comes from the report dict that the measuring code filled
(docs/report_json.md); what to ship where, and the verdict, render report.json's
`decision`, which the report stage made (report/decide.py): nothing here decides.
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
from report import decision_table
from report.decide import (
    check,
    class_name,
    delta,
    entries,
    latency,
    reference,
    size_ratio,
)
from report.markdown import (
    DASH,
    cell,
    interval_words,
    kib,
    md_table,
    p_words,
    percent,
    worst_end,
)
from report.targets import edgetpu_status
from rundir import RunDir
from rundir.files import replacing, write_json

# ---------------------------------------------------------------- cells


def _decision(report):
    """The decision the report stage saved.

    Raises:
        ValueError: the report has none of the per-target kind (it predates
            it); the message says how to make one.
    """
    saved = report.get("decision")
    if not saved or "targets" not in saved:
        raise ValueError("report.json has no per-target decision (decision.targets): it "
                         "predates it. Run the report stage again: python train.py --stages "
                         "report,bundle --run-dir <run>.")
    return saved


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
        kib(entry.get("size_bytes")),
        percent(size_ratio(entry, report)),
        percent(entry.get("top1")),
        percent(entry.get("top5")),
        cell(delta(entry, reference(report)), "+.2f"),
        percent(entry.get("agreement")),
        cell(latency(entry, "1_thread"), ".2f"),
        cell(latency(entry, "all_threads"), ".2f"),
        _edgetpu_cell(edgetpu_status(entry.get("edgetpu"))),
    ]


_HEADERS = ["variant", "file", "size KiB", "size vs float32 %", "top-1 %", "top-5 %",
            "Δ top-1 (points)", "agreement %", "latency 1 thread (ms)",
            "latency all threads (ms)", "Edge TPU"]


# ---------------------------------------------------------------- verdict


def _moves(difference):
    return f"{'gains' if difference > 0 else 'loses'} {abs(difference):.2f}"


def _name(variant):
    return {"keras_float": "Keras float", "keras_qat": "the QAT Keras model"}.get(variant, variant)


def _budget_sentence(candidate, decision):
    """The sentence `int8 loses D points (95% CI L to U): within the ... budget ...`."""
    comparison, budget = candidate["comparison"], decision["budget_points"]
    text = (f"{candidate['variant']} {_moves(comparison['difference_points'])} points "
            f"({interval_words(comparison['interval_points'], decision['confidence'])})")
    if candidate["budget"] == "within":
        return text + f": within the {budget:g}-point budget even at the interval's worst."
    if candidate["budget"] == "outside":
        return text + f": outside the {budget:g}-point budget."
    return (text + f": within the {budget:g}-point budget on the estimate but not at the "
            f"interval's worst ({worst_end(comparison['interval_points'][0], budget)}), so "
            f"{decision['num_test']:,} test images cannot show that it stays within it.")


def _noise_sentence(comparison, *, variant, reference):
    return (f"Image by image, {comparison['reference_only']} "
            f"{'image' if comparison['reference_only'] == 1 else 'images'} only {reference} "
            f"gets right and {comparison['variant_only']} only {variant} does "
            f"(McNemar {p_words(comparison['p_value'])}): "
            + ("within the noise, the interval contains 0." if comparison["within_noise"]
               else "beyond the noise."))


def _class_sentence(candidate, decision):
    classes = candidate["classes"]
    if classes is None:
        return "This report has no per-class results, so no class was checked."
    worst, over = classes["worst"], classes["over_budget"]
    budget = decision["class_budget_points"]
    text = (f"Per class, its worst is class {worst['name']}: recall {100 * worst['recall']:.2f}% "
            f"against {100 * worst['reference_recall']:.2f}% on {worst['count']} images "
            f"({worst['change_points']:+.2f} points, "
            f"{interval_words(worst['comparison']['interval_points'], decision['confidence'])})")
    if not over:
        return text + f", within the {budget:g}-point per-class budget."
    text += f", over the {budget:g}-point per-class budget"
    if len(over) > 1:
        text += (f"; so {'is' if len(over) == 2 else 'are'} "
                 + ", ".join(f"{c['name']} ({c['change_points']:+.2f})" for c in over[1:]))
    return text + "."


def _refusal(candidate, decision):
    """Why one int8 file is not shipped, naming the class and figures where a class breaks it."""
    budget = decision["budget_points"]
    if candidate["budget"] == "outside":
        return (f"{candidate['variant']} loses {-candidate['comparison']['difference_points']:.2f} "
                f"points, outside the {budget:g}-point budget")
    if candidate["budget"] == "unproven":
        return (f"{candidate['variant']} is not shown within the {budget:g}-point budget: its "
                f"interval reaches {worst_end(candidate['worst_points'], budget)} points (more "
                f"test images, a wider --report.budget_points or a lower --report.confidence "
                f"would decide it)")
    worst = candidate["classes"]["over_budget"][0]
    return (f"{candidate['variant']} breaks the {decision['class_budget_points']:g}-point "
            f"per-class budget on class {worst['name']}: recall {100 * worst['recall']:.2f}% "
            f"against {100 * worst['reference_recall']:.2f}% ({worst['change_points']:+.2f} "
            f"points on {worst['count']} images)")


def verdict(report):
    """The one-paragraph verdict on int8, rendered from the report's `decision`.

    Which file goes to which device is the decision table's
    (report/decision_table.py); this paragraph says why int8 is, or is not,
    accurate enough, with the statistics behind it.

    Args:
        report: the report dict, its `decision` made by the report stage.

    Returns:
        A str paragraph.
    """
    check(report)
    decision = _decision(report)
    ref = decision["reference"]
    if ref is None:
        return ("No float reference (keras_float or float32) in this report, so the int8 "
                "loss cannot be judged.")
    ref_name = _name(ref["variant"]) if ref["variant"] == "keras_float" else "float32 TFLite"
    sentences = []
    candidates = decision["candidates"]
    if candidates and not decision["paired"]:
        sentences.append(
            "This report holds no image-by-image results (it was written before the report "
            "kept them), and the paired interval, the budget check and the per-class check "
            "all need them: re-run the report stage (python train.py --stages report "
            "--run-dir <run>). Verdict: not judged.")
        measured = " and ".join(f"{c['variant']} {c['delta_points']:+.2f}" for c in candidates)
        sentences.append(f"For the record, {measured} points against {ref_name}, unjudged.")
        return " ".join(sentences)
    if decision["num_test"] and candidates:
        sentences.append(
            f"Each int8 file is compared with {ref_name} ({100 * ref['top1']:.2f}% top-1) image "
            f"by image on the same {decision['num_test']:,} test images (one image is "
            f"{decision['one_image_points']:.2f} points): the interval is Newcombe's hybrid "
            f"score interval for paired proportions, the p-value McNemar's exact test.")
    for candidate in candidates:
        sentences += [_budget_sentence(candidate, decision),
                      _noise_sentence(candidate["comparison"], variant=candidate["variant"],
                                      reference=ref_name),
                      _class_sentence(candidate, decision)]
    qat = decision.get("qat")
    if qat:
        sentences.append(_qat_sentence(qat, decision["confidence"]))
    selective = decision["selective"]
    if selective:
        kept = selective["layers_in_float"]
        sentences.append(f"Keeping {kept} layer{'s' if kept != 1 else ''} in float "
                         f"(selective int8) gives {selective['delta_points']:+.2f} points at "
                         f"{kib(selective['size_bytes'])} KiB, but a mixed-precision "
                         f"model cannot run on the Edge TPU.")
    chosen = decision["chosen"]
    if chosen is None:
        sentences.append("Verdict: no int8 variant was measured, so int8 cannot be judged.")
        return " ".join(sentences)
    if decision["good_enough"]:
        text = f"Verdict: int8 is good enough: {chosen['variant']}"
        if chosen["size_vs_float32"] is not None:
            text += f", at {100 * chosen['size_vs_float32']:.1f}% of the float32 file's size,"
        text += " is"
        shipped = next(c for c in candidates if c["variant"] == chosen["variant"])
        text += (f" within the {decision['budget_points']:g}-point budget at the interval's "
                 f"worst" + (f" and the {decision['class_budget_points']:g}-point budget in "
                             f"every class" if shipped["classes"] else ""))
    else:
        refused = [c for c in candidates if c["good"] is False]
        # No file measured outside a budget: the test set is too small to decide, which is
        # not the same as a file that loses too much.
        undecided = all(c["budget"] == "unproven" and c["within_class_budget"] is not False
                        for c in refused)
        text = (f"Verdict: int8 is not shown good enough on {decision['num_test']:,} test "
                f"images: " if undecided else "Verdict: int8 is not good enough: ")
        text += "; ".join(_refusal(c, decision) for c in refused)
        fallback = decision["fallback"]
        if fallback:
            text += (f". {fallback['variant']} ({fallback['delta_points']:+.2f} points, "
                     f"{interval_words(fallback['interval_points'], decision['confidence'])}, "
                     f"{kib(fallback['size_bytes'])} KiB) is the float alternative")
            if fallback["budget"] != "within":
                text += ", though it too is not within the budget at the interval's worst"
        if decision["next_step"]:
            text += (f"; quantization-aware training ({decision['next_step']}) is the next "
                     f"thing to try")
    sentences += [text + ".", _latency_sentence(chosen, decision["host"]),
                  _edgetpu_sentence(chosen["variant"], chosen["edgetpu"])]
    return " ".join(s for s in sentences if s)


def _host_words(host):
    model = host.get("model") or host.get("platform") or "an unnamed CPU"
    features, checked = host.get("int8_features"), host.get("int8_features_checked") or []
    if features is None:
        return f"{model}, its int8 instructions not read"
    missing = [name for name in checked if name not in features]
    words = f"{model}, {host.get('architecture') or '?'}"
    if features:
        words += f" with {', '.join(features)}"
    if missing:
        words += f"{';' if features else ','} no {' or '.join(missing)}"
    return words


def _latency_sentence(chosen, host):
    """Latency with its machine; a caveat when int8 is not faster than float32 here."""
    fast, one = chosen["speedup_vs_float32"], chosen["speedup_1_thread_vs_float32"]
    if fast is None and one is None:
        return ""
    speeds = [f"{value:.2f}x" + (" the float32 file's speed" if i == 0 else "") + f" on {where}"
              for i, (value, where) in enumerate(
                  (v, w) for v, w in ((fast, "all threads"), (one, "one thread"))
                  if v is not None)]
    text = (f"On this host ({_host_words(host or {})}) {chosen['variant']} runs at "
            f"{' and '.join(speeds)}")
    if chosen["faster_than_float32"]:
        return text + "; a phone's figure will differ."
    return (text + ": int8 is not faster than float32 here. That figure is this host's, not a "
            "phone's (phones run int8 on dot-product instructions, ARM's asimddp and i8mm), "
            "and the choice above rests on accuracy within the budgets and on size, not on "
            "this host's speed.")


def _qat_sentence(qat, confidence):
    epochs = (f"{qat['epochs']} more epoch{'s' if qat['epochs'] != 1 else ''}"
              if qat["epochs"] is not None else "more epochs")
    text = (f"QAT fine-tuned the float model {epochs}: its Keras model (fake-quantized) "
            f"scores {100 * qat['keras_qat_top1']:.2f}% ({qat['keras_qat_delta_points']:+.2f} "
            f"points against Keras float)")
    if qat["conversion_agreement"] is not None:
        text += (f", and the int8_qat file agrees with it on "
                 f"{100 * qat['conversion_agreement']:.2f}% of images")
        conversion = qat.get("conversion")
        if conversion:
            text += (f" ({conversion['difference_points']:+.2f} points, "
                     f"{interval_words(conversion['interval_points'], confidence)})")
    over = qat.get("over_int8")
    if qat["over_int8_points"] is not None and over:
        text += (f"; int8_qat is {over['difference_points']:+.2f} points against int8 PTQ "
                 f"({interval_words(over['interval_points'], confidence)}, "
                 f"McNemar {p_words(over['p_value'])}), "
                 + ("within the noise: QAT's gain is not shown on this test set"
                    if over["within_noise"] else "beyond the noise"))
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
        facts.append(f"{report['num_test']:,} test images")
    if report.get("num_classes") is not None:
        facts.append(f"{report['num_classes']} classes")
    if report.get("created"):
        facts.append(f"measured {report['created']}")
    if machine:
        cpu = machine.get("cpu")
        facts.append(f"on {machine.get('platform', '?')} with {machine.get('cpu_count', '?')} CPUs"
                     + (f" ({_host_words(cpu)})" if cpu else ""))
    return title, ", ".join(facts)


def op_counts(counts):
    """`{op: count}` as one phrase, e.g. `QUANTIZE x2, SOFTMAX x1`."""
    return ", ".join(f"{op} x{n}" for op, n in counts.items())


def _xnnpack_section(report):
    lines = []
    for entry in report["variants"]:
        x = entry.get("xnnpack")
        if not x:
            continue
        left = op_counts(x["not_delegated"])
        lines.append(f"- **{entry['variant']}**: {x['delegated']} of {x['ops']} ops on XNNPACK "
                     f"in {x['partitions']} partition{'s' if x['partitions'] != 1 else ''}"
                     + (f"; LiteRT's own kernels run {left}" if left else ""))
    return lines


def _gpu_section(report):
    check = report.get("mediapipe_check") or {}
    if not check.get("checked"):
        return [f"Not checked: {check.get('reason') or 'this report predates the check'}."]
    lines = []
    for entry in report["variants"]:
        g = entry.get("gpu_delegate")
        if g:
            lines.append(f"- **{entry['variant']}**: " + _gpu_line(g) + "".join(
                f"\n  - {op}: {reason}" for op, reason in sorted(g["fallback"].items())))
    runner = next((e["gpu_delegate"]["runner"] for e in report["variants"]
                   if e.get("gpu_delegate")), DASH)
    return [f"Each file through MediaPipe Tasks' ImageClassifier with `Delegate.GPU`, which "
            "hands it to TensorFlow Lite's GPU delegate as tasks-vision does on Android; here "
            f"{runner}. The delegate places each op by its own rules and names each op type it "
            "leaves to the CPU, with its reason; MediaPipe's GPU path then needs the whole graph "
            "on the GPU. The GPU's top-1 is compared with MediaPipe's on the CPU on the first "
            f"{check['images']} test images. Not shown: the kernels of Android's OpenCL backend, "
            "which most phones try first, and any phone's speed.", ""] + lines


def _gpu_line(g):
    if g["gpu_ops"] is None:
        return f"not placed: {g['error']}"
    placed = (f"all {g['ops']} ops on the GPU delegate" if g["cpu_ops"] == 0 else
              f"{g['gpu_ops']} of {g['ops']} ops on the GPU delegate, {g['cpu_ops']} left to "
              "the CPU")
    if g["ran"]:
        return (f"{placed}; it ran {g['images']} images, top-1 as on the CPU for "
                f"{100 * g['agreement']:.1f}%")
    return f"{placed}; the run fails: {g['error']}"


def _compiler_reason(report):
    """The one reason edgetpu_compiler ran on no file, where it is the same for all; else None."""
    compilers = [(e.get("edgetpu") or {}).get("compiler") for e in report["variants"]
                 if e.get("edgetpu")]
    reasons = {c.get("reason", "") for c in compilers if c is not None and not c.get("ran")}
    unavailable = all(c is not None and not c.get("ran") for c in compilers)
    return reasons.pop() if compilers and unavailable and len(reasons) == 1 else None


def _edgetpu_section(report):
    shared = _compiler_reason(report)
    lines = ([f"edgetpu_compiler did not run on any file: {shared}. Each file is checked "
              f"against the Edge TPU's documented op rules and edgetpu_compiler "
              f"{COMPILER_VERSION}'s op versions.", ""] if shared is not None else [])
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
        notes = [note for note in edgetpu.get("notes") or []
                 if shared is None or not note.startswith("the compiler did not run")]
        if shared is None:  # else said once, above
            lines.append(f"  - {_compiler_words(compiler)}")
        lines += [f"  - {note}" for note in notes]
        versions = _op_versions(edgetpu.get("ops") or [])
        if versions:
            lines.append(f"  - op versions against edgetpu_compiler {COMPILER_VERSION}'s limits: "
                         f"{versions}")
    return lines


def _compiler_words(compiler):
    if compiler is None:
        return "compiler: not run"
    if not compiler.get("ran"):
        return f"compiler: not available ({compiler.get('reason', '')})"
    return (f"compiler {compiler.get('version') or ''}: "
            f"{'ok' if compiler.get('ok') else 'failed'}, "
            f"{cell(compiler.get('mapped_ops'), 'd')} of {cell(compiler.get('total_ops'), 'd')} "
            f"ops mapped" + (f", `{pathlib.Path(compiler['path']).name}`"
                             if compiler.get("path") else ""))


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
             "Each tensor of the int8 file against the float32 file's tensor of the same name, "
             "both run on the calibration images by litert-quantizer's validator (what its "
             "`validate()` runs). The error accumulates from the input on; it is given in "
             "quantization steps (RMSE / scale), where one rounding alone gives 0.29, and as "
             "the signal-to-noise ratio.", ""]
    layers = diagnosis.get("layers") or []
    if layers:
        rows = []
        for layer in layers:
            name = ", ".join(layer.get("keras_layers") or []) or layer.get("tensor_name", "")
            rows.append([cell(layer.get("rank")), f"`{name}`", cell(layer.get("op_name")),
                         cell(layer.get("rmse_per_scale"), ".3f"),
                         cell(layer.get("snr_db"), ".1f"),
                         cell(layer.get("scale"), ".4g"),
                         cell(layer.get("num_elements"), "d")])
        lines.append(md_table(["rank", "layer", "op", "RMSE / scale", "SNR (dB)",
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
        [["int8", kib(int8.get("size_bytes")), percent(int8.get("top1")), percent(int8.get("top5")),
          cell(delta(int8, ref) if int8 else None, "+.2f"), percent(int8.get("agreement"))],
         ["selective int8", kib(selective.get("size_bytes")), percent(selective.get("top1")),
          percent(selective.get("top5")), cell(delta(selective, ref), "+.2f"),
          percent(selective.get("agreement"))]]
        + [[f"selective int8, litert-quantizer recipe ({', '.join(recipe['keep_float'])} "
            "in float)", kib(recipe.get("size_bytes")), percent(recipe.get("top1")),
            percent(recipe.get("top5")), cell(delta(recipe, ref), "+.2f"),
            percent(recipe.get("agreement"))] for recipe in [selective.get("recipe")] if recipe],
        align="lrrrrr"))
    return lines


# How many classes the per-class table shows: beyond it, those that drop most.
MAX_CLASS_ROWS = 20
CONFUSIONS_SHOWN = 3


def _paired_section(report, decision):
    """The table of every paired comparison: discordant images, difference, interval, p."""
    confidence = decision["confidence"]
    rows = [(c["variant"], c["reference"], c) for c in decision["comparisons"]]
    qat = decision.get("qat") or {}
    rows += [("int8_qat", reference, qat[key]) for key, reference in
             (("over_int8", "int8"), ("conversion", "keras_qat")) if qat.get(key)]
    if not rows:
        return []
    table = md_table(
        ["variant", "against", "images only it gets right", "images only the other gets right",
         "Δ top-1 (points)", f"{100 * confidence:g}% CI (points)", "McNemar p", "noise?"],
        [[variant, against, cell(c["variant_only"], "d"), cell(c["reference_only"], "d"),
          cell(c["difference_points"], "+.2f"),
          f"{c['interval_points'][0]:+.2f} to {c['interval_points'][1]:+.2f}",
          p_words(c["p_value"]).removeprefix("p = ").removeprefix("p "),
          "within" if c["within_noise"] else "beyond"] for variant, against, c in rows],
        align="llrrrrrl")
    return ["## Image by image", "",
            f"Every model scored the same {decision['num_test']:,} test images, so each "
            f"comparison is paired: only the images one model gets right and the other wrong "
            f"carry information. Interval: {decision['interval_method']}; p: "
            f"{decision['test_method']}. A difference is within the noise when its interval "
            f"contains 0.", "", table]


def _per_class_section(report, decision):
    """Per-class recall and its change per file, the worst class of each int8 file, confusions."""
    ref = reference(report)
    if ref is None or not ref.get("per_class"):
        return []
    others = [e for e in report["variants"] if e is not ref and e.get("per_class")]
    changes = {e["variant"]: {row["class"]: row["change_points"] for row in e["per_class"]}
               for e in others}
    shown = [row for row in ref["per_class"] if row.get("count")]
    note = ""
    if len(shown) > MAX_CLASS_ROWS:
        drop = {row["class"]: min((changes[v].get(row["class"]) or 0.0) for v in changes)
                for row in shown}
        shown = sorted(sorted(shown, key=lambda row: (drop[row["class"]], row["class"]))
                       [:MAX_CLASS_ROWS], key=lambda row: row["class"])
        note = (f" The {MAX_CLASS_ROWS} classes that drop most in any file are shown, of "
                f"{len(ref['per_class'])}.")
    table = md_table(
        ["class", "images", f"{ref['variant']} recall %"] + [f"{v} Δ" for v in changes],
        [[class_name(report, row["class"]), cell(row["count"], "d"), percent(row["recall"])]
         + [cell(changes[v].get(row["class"]), "+.2f") for v in changes] for row in shown],
        align="lrr" + "r" * len(changes))
    lines = ["## Per class", "",
             f"Recall of each class (the share of its test images a model gets right) for "
             f"{ref['variant']}, and each file's change against it in points.{note}", "", table]
    worst = [c for c in decision["candidates"] if c.get("classes")]
    if worst:
        lines += [""] + [
            f"- **{c['variant']}**'s worst class: {w['name']}, {w['change_points']:+.2f} points "
            f"({interval_words(w['comparison']['interval_points'], decision['confidence'])}, "
            f"McNemar {p_words(w['comparison']['p_value'])}); "
            + (f"{len(c['classes']['over_budget'])} over the "
               f"{decision['class_budget_points']:g}-point per-class budget"
               if c["classes"]["over_budget"] else
               f"every class within the {decision['class_budget_points']:g}-point budget")
            for c in worst if (w := c["classes"]["worst"])]
    confusions = [_confusion_line(report, e) for e in others if e.get("confusion_changes")]
    lines += ["", f"Confusions whose counts changed most against {ref['variant']}:", ""]
    lines += confusions or ["- none: every file makes the same mistakes as the reference."]
    return lines


def _confusion_line(report, entry):
    parts = []
    for pair in entry["confusion_changes"][:CONFUSIONS_SHOWN]:
        times = abs(pair["change"])
        parts.append(f"{class_name(report, pair['true'])} taken for "
                     f"{class_name(report, pair['predicted'])}: {times} "
                     f"{'more' if pair['change'] > 0 else 'fewer'} "
                     f"time{'s' if times != 1 else ''} ({pair['reference']} → {pair['variant']})")
    return f"- **{entry['variant']}**: " + "; ".join(parts)


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
    decision = _decision(report)
    title, facts = _header(report)
    lines = [title, ""]
    if facts:
        lines += [facts + ".", ""]
    lines += decision_table.render_section(decision) + [""]
    lines += ["## Variants", "",
              md_table(_HEADERS, [_row(e, report) for e in report["variants"]],
                       align="llrrrrrrrrl"), ""]
    lines.append(f"Δ top-1 is against {ref['variant'] if ref else 'no reference'}; "
                 "agreement is the share of test images where the variant's top-1 class "
                 "equals the Keras float model's; latency is the median of repeated "
                 "single-image runs, every file timed in the same turns.")
    if chart:
        lines += ["", f"![accuracy against size and latency; recall change per class]({chart})"]
    edgetpu = _edgetpu_section(report)
    if edgetpu:
        lines += ["", "## Edge TPU", ""] + edgetpu
    cpu = _xnnpack_section(report)
    if cpu:
        lines += ["", "## CPU: ops on XNNPACK", "",
                  "LiteRT hands supported ops to its XNNPACK delegate; the others run on its "
                  "own, slower kernels, and each change between the two cuts the graph.", ""]
        lines += cpu
    lines += ["", "## Android GPU delegate", ""] + _gpu_section(report)
    for section in (_paired_section(report, decision), _per_class_section(report, decision)):
        if section:
            lines += [""] + section
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


def _class_changes(report):
    """(variants, classes, matrix of recall changes in points) for the per-class panel, or None."""
    ref = reference(report)
    if ref is None or not ref.get("per_class"):
        return None
    others = [e for e in report["variants"] if e is not ref and e.get("per_class")]
    if not others:
        return None
    classes = [row["class"] for row in ref["per_class"] if row.get("count")]
    values = np.array([[next((row["change_points"] for row in e["per_class"]
                              if row["class"] == k), None) or 0.0 for k in classes]
                       for e in others], dtype=float)
    if len(classes) > MAX_CLASS_ROWS:  # the classes that drop most in any file
        keep = np.sort(np.argsort(values.min(axis=0), kind="stable")[:MAX_CLASS_ROWS])
        classes, values = [classes[i] for i in keep], values[:, keep]
    return [e["variant"] for e in others], classes, values


def _class_panel(axes, report, decision, changes):
    variants, classes, values = changes
    budget = decision["class_budget_points"]
    limit = max(float(np.abs(values).max()), budget, 1e-9)
    image = axes.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    axes.set_xticks(range(len(classes)), [class_name(report, k) for k in classes],
                    rotation=30 if len(classes) > 10 else 0, ha="right" if len(classes) > 10
                    else "center", fontsize=8)
    axes.set_yticks(range(len(variants)), variants, fontsize=8)
    axes.set_xlabel("class")
    for (row, col), value in np.ndenumerate(values):
        axes.text(col, row, f"{value:+.1f}", ha="center", va="center", fontsize=7,
                  fontweight="bold" if value < -budget else "normal",
                  color="white" if abs(value) > 0.6 * limit else "black")
    axes.set_title(f"recall change per class against {decision['reference']['variant']}, "
                   f"points (bold: over the {budget:g}-point per-class budget)", fontsize=9)
    axes.figure.colorbar(image, ax=axes, fraction=0.03, pad=0.01)


def render_chart(report, path):
    """Plots top-1 against file size and against latency, and each class's recall change.

    Args:
        report: the report dict; the budget band below the float reference is
            its `decision`'s (decided with the default budgets when missing).
        path: str or Path of the PNG to write.

    Returns:
        The Path written.
    """
    check(report)
    decision = _decision(report)
    ref, budget_points = decision["reference"], decision["budget_points"]
    changes = _class_changes(report)
    figure = Figure(figsize=(11, 8.5 if changes else 4.5), dpi=110)
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(2 if changes else 1, 2)
    panels = [("file size (KiB)", lambda e: None if e.get("size_bytes") is None
               else e["size_bytes"] / 1024.0)]
    panels.append(("latency on this host, median ms (all threads; 1 thread where missing)",
                   lambda e: latency(e, "all_threads") or latency(e, "1_thread")))
    for i, (xlabel, x_of) in enumerate(panels):
        axes = figure.add_subplot(grid[0, i])
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
            axes.axhspan(top - budget_points, top, color="green", alpha=0.08,
                         label=f"verdict budget: {budget_points:g} point(s)")
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
    if changes:
        _class_panel(figure.add_subplot(grid[1, :]), report, decision, changes)
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
    _decision(report)
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
