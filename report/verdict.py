"""The verdict on int8, rendered from report.json's `decision`: is int8 accurate enough, and why.

Every sentence reads the decision the report stage saved (report/decide.py)
and the numbers behind it; nothing here decides. Which file goes to which
device is report/decision_table.py's.

    >>> print(verdict(report))
"""

from report.decide import check, saved_decision
from report.decision_table import refusal_words
from report.markdown import interval_words, kib, p_words, worst_end


def _moves(difference):
    return f"{'gains' if difference > 0 else 'loses'} {abs(difference):.2f}"


def model_words(variant):
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
    decision = saved_decision(report)
    ref = decision["reference"]
    if ref is None:
        return ("No float reference (keras_float or float32) in this report, so the int8 "
                "loss cannot be judged.")
    ref_name = model_words(ref["variant"]) if ref["variant"] == "keras_float" else "float32 TFLite"
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
        text += "; ".join(f"{c['variant']} {refusal_words(c, decision)}" for c in refused)
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


def host_words(host):
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
    text = (f"On this host ({host_words(host or {})}) {chosen['variant']} runs at "
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
