"""The report's evidence sections: Edge TPU, XNNPACK, Android's GPU delegate, per-layer int8 error.

Each renders what the report stage measured for every file, from report.json.
"""

import pathlib

from export.edgetpu import COMPILER_VERSION
from report.decide import delta, entries
from report.markdown import DASH, cell, kib, md_table, percent
from report.targets import edgetpu_status


def op_counts(counts):
    """`{op: count}` as one phrase, e.g. `QUANTIZE x2, SOFTMAX x1`."""
    return ", ".join(f"{op} x{n}" for op, n in counts.items())


def xnnpack_section(report):
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


def gpu_section(report):
    check = report.get("mediapipe_check") or {}
    if not check.get("checked"):
        return [f"Not checked: {check.get('reason') or 'this report predates the check'}."]
    lines = []
    for entry in report["variants"]:
        g = entry.get("gpu_delegate")
        if g:
            lines.append(f"- **{entry['variant']}**: " + _gpu_line(g) + "".join(
                f"\n    - {op}: {reason}" for op, reason in sorted(g["fallback"].items())))
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


def edgetpu_section(report):
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
            lines.append(f"    - ops that break the rules: {shown}")
        compiler = edgetpu.get("compiler")
        notes = [note for note in edgetpu.get("notes") or []
                 if shared is None or not note.startswith("the compiler did not run")]
        if shared is None:  # else said once, above
            lines.append(f"    - {_compiler_words(compiler)}")
        lines += [f"    - {note}" for note in notes]
        versions = _op_versions(edgetpu.get("ops") or [])
        if versions:
            lines.append(f"    - op versions against edgetpu_compiler {COMPILER_VERSION}'s limits: "
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


def diagnosis_section(report, ref):
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
