"""Decides from report.json's numbers which file goes to each target, and if int8 is good enough.

`decide(report)` is saved as report.json's `decision` (docs/report_json.md);
the verdict, Markdown and chart of report/render.py render from it. The
helpers that read a report (reference, deltas, latency, Edge TPU status) live
here too, so the renderers read the numbers the way the decision did.

Every comparison is paired, image by image (report/statistics.py): an int8
file is within the top-1 budget only when its whole interval is, i.e. at the
interval's worst end; and no class may lose more recall than the per-class
budget. The per-class check is on the measured change, not the interval's
worst end: a class has a tenth of the test images or fewer, and its interval
is wide even for a file that agrees on every image (+-9.6 points on the 36
images of a digits class), so that end would refuse every file whatever its
quality. The worst class's interval is saved so the reader sees how sure it
is. Host latency never decides: a server CPU is not a phone.

For each deployment target (report/targets.py) the pick is the smallest file
that the target's runtime ran and that is within both budgets; where none is,
float32 if it runs there, else nothing, with each file's reason. A file not
shown within the budget on this test set gets the number of test images that
would show it (`statistics.images_needed`).

    >>> decision = decide(report, budget_points=1.0, class_budget_points=3.0)
    >>> decision["ship"], [(t["target"], t["pick"]) for t in decision["targets"]]
    ('int8', [('android_cpu', 'int8'), ('android_gpu', 'fp16'), ...])
"""

from report import statistics, targets
from report.targets import edgetpu_status

# The defaults of the job's `report` section (job/config.py).
BUDGET_POINTS = 1.0  # top-1 points an int8 file may lose, at the interval's worst end
CLASS_BUDGET_POINTS = 3.0  # recall points any one class may lose
CONFIDENCE = statistics.DEFAULT_CONFIDENCE
# The levels a decision's intervals may have, [0.5, 1): below 0.5 an interval misses the
# true difference more often than it holds it, so its worst end shows nothing; at 1 it is
# infinitely wide. `decide` refuses any other level, and the job's configuration holds
# `report.confidence` to it (job/config.py).
CONFIDENCE_RANGE = (0.5, 1.0)  # the lowest valid level, and the bound every level is below
REFERENCES = ("keras_float", "float32")
INT8_VARIANTS = ("int8", "int8_qat")
FALLBACK = "fp16"  # what Android can run when int8 loses too much
NEXT_STEP = "int8_qat"
_FRACTIONS = ("top1", "top5", "agreement")
_TOLERANCE = statistics.POINTS_TOLERANCE
# Where no file is shown within the budgets, the file that computes what Keras float
# computes is the one to ship, if it runs there: it loses nothing to quantization.
TARGET_FALLBACK = "float32"
SHIP_TARGET = "android_cpu"  # whose pick `ship` gives, for scripts that read one answer


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


def _counts(entry, ref):
    """`entry`'s 2x2 table against `ref`, or None when it was measured against another model."""
    paired = entry.get("paired")
    return paired if paired and paired.get("reference") == ref["variant"] else None


def class_name(report, index):
    """The name of class `index` (report.json's `class_names`), else the index as text."""
    names = report.get("class_names") or []
    return str(names[index]) if index < len(names) else str(index)


def _budget_state(difference, interval, budget):
    """`within` (even at the interval's worst end), `unproven` (on the estimate only), `outside`."""
    if interval[0] >= -budget - _TOLERANCE:
        return "within"
    return "unproven" if difference >= -budget - _TOLERANCE else "outside"


def _classes(entry, ref, report, *, class_budget_points, confidence):
    """The per-class check of one file: its worst class (with interval) and those over budget."""
    rows = entry.get("per_class")
    if not rows or _counts(entry, ref) is None:
        return None
    judged = [row for row in rows if row.get("count")]
    if not judged:
        return None

    def facts(row):
        count = row["count"]
        return {"class": row["class"], "name": class_name(report, row["class"]), "count": count,
                "recall": row["recall"],
                "reference_recall": (row["both_right"] + row["reference_only"]) / count,
                "change_points": row["change_points"]}

    worst = min(judged, key=lambda row: (row["change_points"], row["class"]))
    over = sorted((row for row in judged
                   if row["change_points"] < -class_budget_points - _TOLERANCE),
                  key=lambda row: (row["change_points"], row["class"]))
    return {"worst": {**facts(worst), "comparison": statistics.paired_difference(
                worst, confidence=confidence)},
            "over_budget": [facts(row) for row in over],
            "within_budget": not over}


def _candidate(entry, ref, report, *, budget_points, class_budget_points, confidence):
    counts = _counts(entry, ref)
    comparison = statistics.paired_difference(counts, confidence=confidence) if counts else None
    classes = _classes(entry, ref, report, class_budget_points=class_budget_points,
                       confidence=confidence)
    budget = (_budget_state(comparison["difference_points"], comparison["interval_points"],
                            budget_points) if comparison else None)
    within_class = classes["within_budget"] if classes else None
    needed = (statistics.images_needed(counts, budget_points=budget_points,
                                       confidence=confidence)
              if budget == "unproven" else None)
    return {
        "variant": entry["variant"],
        "top1": entry["top1"],
        "delta_points": delta(entry, ref),
        "agreement": entry.get("agreement"),
        "size_bytes": entry.get("size_bytes"),
        "comparison": comparison,
        "worst_points": comparison["interval_points"][0] if comparison else None,
        "budget": budget,
        "within_budget": None if budget is None else budget == "within",
        # Test images that would show it within the budget, at the discordance observed.
        "images_needed": needed,
        "classes": classes,
        "within_class_budget": within_class,
        "good": None if budget is None else (budget == "within" and within_class is not False),
    }


def _selective(report, ref):
    selective = (report.get("diagnosis") or {}).get("selective")
    if not selective or selective.get("top1") is None:
        return None
    return {"layers_in_float": len(selective.get("denylist") or []),
            "top1": selective["top1"], "delta_points": delta(selective, ref),
            "size_bytes": selective.get("size_bytes")}


def _speedup(entry, float32, threads):
    fast = latency(entry, threads)
    slow = latency(float32, threads) if float32 else None
    return slow / fast if fast and slow else None


def _chosen(entry, report):
    float32 = entries(report).get("float32")
    speedups = {threads: _speedup(entry, float32, threads)
                for threads in ("all_threads", "1_thread")}
    measured = [s for s in speedups.values() if s is not None]
    return {"variant": entry["variant"],
            "delta_points": delta(entry, reference(report)),
            "size_vs_float32": size_ratio(entry, report),
            "speedup_vs_float32": speedups["all_threads"],
            "speedup_1_thread_vs_float32": speedups["1_thread"],
            # Faster only when faster at every measured thread count.
            "faster_than_float32": min(measured) > 1.0 if measured else None,
            "edgetpu": edgetpu_status(entry.get("edgetpu"))}


def _host(report):
    machine = report.get("machine") or {}
    cpu = machine.get("cpu") or {}
    return {"cpu_count": machine.get("cpu_count"), "platform": machine.get("platform"),
            "model": cpu.get("model"), "architecture": cpu.get("architecture"),
            "int8_features": cpu.get("int8_features"),
            "int8_features_checked": cpu.get("int8_features_checked")}


def comparisons(report, ref, *, confidence):
    """Every file against the reference, image by image, in the report's order.

    Returns:
        list of dicts: `variant`, `reference` and the keys of
        `report.statistics.paired_difference`; files without image-by-image
        counts against `ref` are left out.
    """
    rows = []
    for entry in report["variants"]:
        counts = _counts(entry, ref)
        if entry is ref or counts is None:
            continue
        rows.append({"variant": entry["variant"], "reference": ref["variant"],
                     **statistics.paired_difference(counts, confidence=confidence)})
    return rows


def qat_gain(report, *, confidence=CONFIDENCE):
    """What quantization-aware training bought, judged fairly and image by image.

    int8_qat's Δ against keras_float counts QAT's extra fine-tuning epochs as
    if they were a quantization gain. Here the QAT Keras model (fake-quant)
    is the reference of the int8_qat file (the conversion's fidelity), and
    int8_qat is compared with int8 PTQ of the same float model.

    Args:
        report: the report dict, with `keras_qat` and `int8_qat` variants and
            the report's `qat` facts (`against_int8`, `against_keras_qat`:
            2x2 tables, `report.statistics.paired_counts`).
        confidence: float, the level of the intervals.

    Returns:
        None without both variants; else a dict: `epochs` (QAT's extra
        fine-tuning epochs), `keras_qat_top1`, `keras_qat_delta_points`
        (against keras_float), `conversion_agreement` (int8_qat's top-1
        agreement with the QAT Keras model), `conversion` (int8_qat against
        the QAT Keras model, `report.statistics.paired_difference`, or None),
        `over_int8_points` (int8_qat top-1 minus int8's, or None without
        int8), `over_int8` (the paired comparison behind it, or None without
        counts) and `within_noise` (its interval contains 0; None without
        counts).
    """
    by_name = entries(report)
    if "keras_qat" not in by_name or "int8_qat" not in by_name:
        return None
    keras_qat, int8_qat = by_name["keras_qat"], by_name["int8_qat"]
    facts = report.get("qat") or {}

    def paired(key):
        counts = facts.get(key)
        return statistics.paired_difference(counts, confidence=confidence) if counts else None

    over = (100.0 * (int8_qat["top1"] - by_name["int8"]["top1"]) if "int8" in by_name
            else None)
    over_int8 = paired("against_int8") if over is not None else None
    return {"epochs": facts.get("epochs"), "keras_qat_top1": keras_qat["top1"],
            "keras_qat_delta_points": delta(keras_qat, reference(report)),
            "conversion_agreement": facts.get("int8_qat_agreement"),
            "conversion": paired("against_keras_qat"),
            "over_int8_points": over, "over_int8": over_int8,
            "within_noise": over_int8["within_noise"] if over_int8 else None}


def _files(report):
    """The entries of exported files, in the report's order (not the Keras models)."""
    return [entry for entry in report["variants"] if entry.get("file")]


def target_decision(target, report, ref, *, not_checked, **settings):
    """The file to ship to one target, and each file's case for or against it.

    Args:
        target: a `report.targets.Target`.
        report: the report dict.
        ref: the reference entry (`reference(report)`).
        not_checked: str, why a file without the target's evidence was not run there.
        **settings: `budget_points`, `class_budget_points`, `confidence`.

    Returns:
        dict: `target`, `title`, `runtime` (the target's runtime, in words);
        `pick` (a variant name or None); `why` (`within_budgets`: the
        smallest file that runs there and is within both budgets;
        `float32_fallback`: none is, and float32 runs there; `none_within_budgets`:
        none is, and float32 does not run there; `none_runs`; `not_checked`);
        `runs` (per file that runs there: `variant`, `file`, `proof`,
        `verified_on` (its runtime and version) and the keys of a
        candidate: `size_bytes`, `delta_points`, `comparison`, `budget`,
        `good`, `images_needed`, ...); `refused` (per file that does not:
        `variant`, `proof`, `verified_on`, `reason`); `not_checked` (the
        variants the runtime never saw, and why).
    """
    runs, refused, unseen = [], [], []
    for entry in _files(report):
        there = targets.runs_there(target, entry, not_checked=not_checked)
        proof = {"variant": entry["variant"], "proof": there["proof"],
                 "verified_on": there["runtime"]}
        if there["runs"] is None:
            unseen.append(entry["variant"])
        elif there["runs"]:
            runs.append({**proof, "file": entry["file"],
                         **_candidate(entry, ref, report, **settings)})
        else:
            refused.append({**proof, "reason": there["reason"]})
    good = [c for c in runs if c["good"]]
    fallback = next((c for c in runs if c["variant"] == TARGET_FALLBACK), None)
    if good:
        pick, why = min(good, key=lambda c: (c["size_bytes"] or 0, -c["top1"])), "within_budgets"
    elif fallback:
        pick, why = fallback, "float32_fallback"
    else:
        pick = None
        why = ("none_within_budgets" if runs else "none_runs" if refused else "not_checked")
    return {"target": target.name, "title": target.title, "runtime": target.runtime,
            "pick": pick["variant"] if pick else None, "why": why, "runs": runs,
            "refused": refused,
            "not_checked": {"variants": unseen, "reason": not_checked} if unseen else None}


def _not_checked(report, target):
    """Why the report has no answer of `target`'s runtime for a file."""
    mediapipe = report.get("mediapipe_check") or {}
    if target.evidence in targets.MEDIAPIPE_EVIDENCE and mediapipe.get("reason"):
        return f"not run: {mediapipe['reason']}"
    return "not run: this report predates the check"


def saved_decision(report):
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


def _check_settings(budget_points, class_budget_points, confidence):
    for name, value in (("budget_points", budget_points),
                        ("class_budget_points", class_budget_points)):
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0 (points of top-1 or recall), got {value!r}; "
                             f"set it with --report.{name}.")
    low, high = CONFIDENCE_RANGE
    if not low <= confidence < high:
        raise ValueError(f"confidence must be a level in [{low:g}, {high:g}), e.g. 0.95, got "
                         f"{confidence!r}; set it with --report.confidence.")


def decide(report, *, budget_points=BUDGET_POINTS, class_budget_points=CLASS_BUDGET_POINTS,
           confidence=CONFIDENCE, target_names=targets.NAMES):
    """Which file to ship to each target, whether int8 is good enough, and the numbers behind it.

    A file is *good* when the worst end of its paired interval against the
    reference loses at most `budget_points` of top-1 and no class loses more
    than `class_budget_points` of recall. Each target gets the smallest good
    file its runtime ran (`target_decision`); int8 is good enough when an
    int8 file is good, and the best such (highest top-1, then smallest) is
    `chosen`. Latency on this host is reported, never weighed.

    Args:
        report: the report dict (docs/report_json.md).
        budget_points: float >= 0, the top-1 points an int8 file may lose.
        class_budget_points: float >= 0, the recall points one class may lose.
        confidence: float in `CONFIDENCE_RANGE`, [0.5, 1), the level of every interval.
        target_names: names from `report.targets.NAMES`, the targets to decide for.

    Returns:
        A JSON-able dict (report.json's `decision`, every key in
        docs/report_json.md): the settings (`budget_points`,
        `class_budget_points`, `confidence`, `interval_method`,
        `test_method`); `reference`; `num_test`, `one_image_points`; `paired`
        (whether the int8 files carry image-by-image counts); `comparisons`;
        `targets` (one `target_decision` per target); `ship` (the Android
        CPU pick, for scripts that read one answer); `candidates` (per int8
        file: `variant`, `top1`, `delta_points`, `agreement`, `size_bytes`,
        `comparison`, `worst_points`, `budget`, `within_budget`,
        `images_needed`, `classes`, `within_class_budget`, `good`);
        `selective`; `qat`; `good_enough` (None when nothing can be
        judged); `chosen`; `fallback`; `next_step`; `host`.

    Raises:
        ValueError: a malformed report, a negative budget or a confidence
            outside [0.5, 1).
    """
    check(report)
    _check_settings(budget_points, class_budget_points, confidence)
    chosen_targets = targets.check_targets(target_names)
    by_name = entries(report)
    ref = reference(report)
    num_test = report.get("num_test")
    decision = {"budget_points": budget_points, "class_budget_points": class_budget_points,
                "confidence": confidence, "interval_method": statistics.INTERVAL_METHOD,
                "test_method": statistics.TEST_METHOD, "reference": None,
                "num_test": num_test, "one_image_points": 100.0 / num_test if num_test else None,
                "paired": False, "comparisons": [], "targets": [], "candidates": [],
                "selective": None,
                "qat": None, "good_enough": None, "ship": None, "chosen": None,
                "fallback": None, "next_step": None, "host": _host(report)}
    if ref is None:
        return decision
    decision["reference"] = {"variant": ref["variant"], "top1": ref["top1"]}
    decision["comparisons"] = comparisons(report, ref, confidence=confidence)
    settings = {"budget_points": budget_points, "class_budget_points": class_budget_points,
                "confidence": confidence}
    decision["targets"] = [target_decision(target, report, ref,
                                           not_checked=_not_checked(report, target), **settings)
                           for target in chosen_targets]
    decision["ship"] = next((t["pick"] for t in decision["targets"]
                             if t["target"] == SHIP_TARGET), None)
    int8 = [by_name[name] for name in INT8_VARIANTS if name in by_name]
    candidates = [_candidate(entry, ref, report, **settings) for entry in int8]
    decision["candidates"] = candidates
    decision["selective"] = _selective(report, ref)
    decision["qat"] = qat_gain(report, confidence=confidence)
    judged = [c for c in candidates if c["good"] is not None]
    decision["paired"] = bool(candidates) and len(judged) == len(candidates)
    if not judged:
        return decision
    good = [c for c in judged if c["good"]]
    # Accuracy first, then size; the host's latency is no phone's and does not choose.
    best = max(good or judged, key=lambda c: (c["top1"], -(c["size_bytes"] or 0)))
    decision["good_enough"] = bool(good)
    decision["chosen"] = _chosen(by_name[best["variant"]], report)
    if good:
        return decision
    fallback = next((c for c in decision["comparisons"] if c["variant"] == FALLBACK), None)
    if fallback:
        decision["fallback"] = {
            "variant": FALLBACK, "delta_points": delta(by_name[FALLBACK], ref),
            "size_bytes": by_name[FALLBACK].get("size_bytes"),
            "interval_points": fallback["interval_points"],
            "budget": _budget_state(fallback["difference_points"], fallback["interval_points"],
                                    budget_points)}
    decision["next_step"] = NEXT_STEP if NEXT_STEP not in by_name else None
    return decision
