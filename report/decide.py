"""Decides from report.json's numbers whether int8 is good enough, and which file to ship.

`decide(report)` is saved as report.json's `decision` (docs/report_json.md);
the verdict, Markdown and chart of report/render.py render from it. The
helpers that read a report (reference, deltas, latency, Edge TPU status) live
here too, so the renderers read the numbers the way the decision did.

    >>> decision = decide(report)
    >>> decision["ship"], decision["good_enough"]
    ('int8', True)
"""

from report.statistics import standard_error_points, within_noise

# The budget the verdict applies: int8 is "good enough" when it loses at most
# this many top-1 points against the Keras float model.
VERDICT_POINTS = 1.0
REFERENCES = ("keras_float", "float32")
INT8_VARIANTS = ("int8", "int8_qat")
FALLBACK = "fp16"  # what Android can run when int8 loses too much
NEXT_STEP = "int8_qat"
_FRACTIONS = ("top1", "top5", "agreement")


def check(report):
    """Raises ValueError unless `report` is a report dict with fractions in [0, 1].

    Args:
        report: the report dict (docs/report_json.md).

    Raises:
        ValueError: no `variants`, a variant without `variant`/`top1`, or an
            accuracy given in percent.
    """
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


def entries(report):
    """The report's variants as {variant name: entry}."""
    return {entry["variant"]: entry for entry in report["variants"]}


def reference(report):
    """The entry the deltas are against: `keras_float`, else `float32`, else None."""
    by_name = entries(report)
    return next((by_name[name] for name in REFERENCES if name in by_name), None)


def delta(entry, ref):
    """Top-1 points of `entry` against `ref`: the stored delta, else computed, else None."""
    if entry.get("top1_delta_points") is not None:
        return entry["top1_delta_points"]
    if ref is None or entry.get("top1") is None or ref.get("top1") is None:
        return None
    return 100.0 * (entry["top1"] - ref["top1"])


def latency(entry, threads):
    """The median ms of `entry` at `threads` (`1_thread`, `all_threads`), or None."""
    stats = (entry.get("latency_ms") or {}).get(threads)
    return stats.get("median_ms") if stats else None


def size_ratio(entry, report):
    """`entry`'s file size as a fraction of the float32 file's, or None."""
    float32 = entries(report).get("float32")
    if not float32 or not float32.get("size_bytes") or entry.get("size_bytes") is None:
        return None
    return entry["size_bytes"] / float32["size_bytes"]


def edgetpu_status(edgetpu):
    """What an `edgetpu` check (export.edgetpu.check) says about one file.

    Args:
        edgetpu: a variant's `edgetpu` dict, or None.

    Returns:
        None when the file was not checked; otherwise a dict: `compatible`
        (bool), `total_ops`, `first_cpu_op` (`index`, `op`, `reason` of the
        first op left to the CPU, or None), `confirmed_by` (`compiler` when
        edgetpu_compiler ran and counted mapped ops, else `rules`),
        `compiler_version`, `mapped_ops` and `compiler_total_ops` (None
        unless the compiler confirmed).
    """
    if not edgetpu:
        return None
    ops = edgetpu.get("ops") or []
    first = edgetpu.get("first_cpu_op")
    compiler = edgetpu.get("compiler") or {}
    confirmed = bool(compiler.get("ran")) and compiler.get("mapped_ops") is not None
    return {
        "compatible": bool(edgetpu.get("compatible")),
        "total_ops": edgetpu.get("total_ops", len(ops)),
        "first_cpu_op": ({key: ops[first][key] for key in ("index", "op", "reason")}
                         if first is not None and first < len(ops) else None),
        "confirmed_by": "compiler" if confirmed else "rules",
        "compiler_version": compiler.get("version") if confirmed else None,
        "mapped_ops": compiler["mapped_ops"] if confirmed else None,
        "compiler_total_ops": compiler.get("total_ops") if confirmed else None,
    }


def _candidate(entry, ref, *, threshold_points, standard_error):
    points = delta(entry, ref)
    return {
        "variant": entry["variant"],
        "top1": entry["top1"],
        "delta_points": points,
        "agreement": entry.get("agreement"),
        "within_budget": points is not None and points >= -threshold_points,
        "within_noise": bool(standard_error) and points is not None
                        and within_noise(points, standard_error),
    }


def _selective(report, ref):
    selective = (report.get("diagnosis") or {}).get("selective")
    if not selective or selective.get("top1") is None:
        return None
    return {"layers_in_float": len(selective.get("denylist") or []),
            "top1": selective["top1"], "delta_points": delta(selective, ref),
            "size_bytes": selective.get("size_bytes")}


def _chosen(entry, report):
    float32 = entries(report).get("float32")
    fast = latency(entry, "all_threads")
    slow = latency(float32, "all_threads") if float32 else None
    return {"variant": entry["variant"],
            "delta_points": delta(entry, reference(report)),
            "size_vs_float32": size_ratio(entry, report),
            "speedup_vs_float32": slow / fast if fast and slow else None,
            "edgetpu": edgetpu_status(entry.get("edgetpu"))}


def qat_gain(report, *, standard_error):
    """What quantization-aware training bought, judged fairly.

    int8_qat's Δ against keras_float counts QAT's extra fine-tuning epochs as
    if they were a quantization gain. Here the QAT Keras model (fake-quant)
    is the reference of the int8_qat file (the conversion's fidelity), and
    int8_qat is compared with int8 PTQ of the same float model.

    Args:
        report: the report dict, with `keras_qat` and `int8_qat` variants and
            the report's `qat` facts.
        standard_error: float points, the test set's standard error of a top-1.

    Returns:
        None without both variants; else a dict: `epochs` (QAT's extra
        fine-tuning epochs), `keras_qat_top1`, `keras_qat_delta_points`
        (against keras_float), `conversion_agreement` (int8_qat's top-1
        agreement with the QAT Keras model), `over_int8_points` (int8_qat
        top-1 minus int8's, or None without int8) and `within_noise`
        (`report.statistics.within_noise`).
    """
    by_name = entries(report)
    if "keras_qat" not in by_name or "int8_qat" not in by_name:
        return None
    keras_qat, int8_qat = by_name["keras_qat"], by_name["int8_qat"]
    facts = report.get("qat") or {}
    over = (100.0 * (int8_qat["top1"] - by_name["int8"]["top1"]) if "int8" in by_name
            else None)
    return {"epochs": facts.get("epochs"), "keras_qat_top1": keras_qat["top1"],
            "keras_qat_delta_points": delta(keras_qat, reference(report)),
            "conversion_agreement": facts.get("int8_qat_agreement"),
            "over_int8_points": over,
            "within_noise": (over is not None and bool(standard_error)
                             and within_noise(over, standard_error))}


def decide(report, *, threshold_points=VERDICT_POINTS):
    """Whether int8 is good enough, which file to ship, and the numbers behind it.

    Args:
        report: the report dict (docs/report_json.md).
        threshold_points: float, the top-1 points an int8 file may lose against
            the Keras float model and still be "good enough".

    Returns:
        A JSON-able dict (report.json's `decision`): `threshold_points`;
        `reference` (`variant`, `top1`, or None); `num_test`,
        `one_image_points`, `standard_error_points` (of the reference top-1);
        `candidates` (per int8 file: `variant`, `top1`, `delta_points`,
        `agreement`, `within_budget`, `within_noise`); `selective`
        (`layers_in_float`, `top1`, `delta_points`, `size_bytes`, or None);
        `good_enough` (None when nothing can be judged); `ship` (a variant
        name, or None); `chosen` (the best int8 file, shipped or not:
        `variant`, `delta_points`, `size_vs_float32`, `speedup_vs_float32`,
        `edgetpu` from `edgetpu_status`); and when int8 is not good enough,
        `fallback` (`variant`, `delta_points`, `size_bytes` of fp16, or None)
        and `next_step` (`int8_qat` when not measured yet, or None); `qat`
        (from `qat_gain`, or None).

    Raises:
        ValueError: a malformed report, or a negative threshold.
    """
    check(report)
    if threshold_points < 0:
        raise ValueError(f"threshold_points must be >= 0, got {threshold_points!r}.")
    by_name = entries(report)
    ref = reference(report)
    num_test = report.get("num_test")
    decision = {"threshold_points": threshold_points, "reference": None,
                "num_test": num_test, "one_image_points": None, "standard_error_points": None,
                "candidates": [], "selective": None, "good_enough": None, "ship": None,
                "chosen": None, "fallback": None, "next_step": None, "qat": None}
    if ref is None:
        return decision
    decision["reference"] = {"variant": ref["variant"], "top1": ref["top1"]}
    if num_test:
        decision["one_image_points"] = 100.0 / num_test
        decision["standard_error_points"] = standard_error_points(ref["top1"], num_test)
    int8 = [by_name[name] for name in INT8_VARIANTS if name in by_name]
    decision["candidates"] = [
        _candidate(entry, ref, threshold_points=threshold_points,
                   standard_error=decision["standard_error_points"]) for entry in int8]
    decision["selective"] = _selective(report, ref)
    decision["qat"] = qat_gain(report, standard_error=decision["standard_error_points"])
    if not int8:
        return decision
    good = [entry for entry, candidate in zip(int8, decision["candidates"])
            if candidate["within_budget"]]
    best = max(good or int8, key=lambda entry: entry["top1"])
    decision["good_enough"] = bool(good)
    decision["chosen"] = _chosen(best, report)
    if good:
        decision["ship"] = best["variant"]
        return decision
    fallback = by_name.get(FALLBACK)
    if fallback and delta(fallback, ref) is not None:
        decision["fallback"] = {"variant": FALLBACK, "delta_points": delta(fallback, ref),
                                "size_bytes": fallback.get("size_bytes")}
    decision["next_step"] = NEXT_STEP if NEXT_STEP not in by_name else None
    return decision
