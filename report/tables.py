"""The report's tables: the variants, then image by image and per class, from report.json.

    >>> print(render_table(report))
"""

import pathlib

from report.decide import check, class_name, delta, latency, reference, size_ratio
from report.markdown import DASH, cell, interval_words, kib, md_table, p_words, percent
from report.targets import edgetpu_status


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


def variant_row(entry, report):
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


HEADERS = ["variant", "file", "size KiB", "size vs float32 %", "top-1 %", "top-5 %",
            "Δ top-1 (points)", "agreement %", "latency 1 thread (ms)",
            "latency all threads (ms)", "Edge TPU"]


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
    rows = [[c for i, c in enumerate(variant_row(e, report)) if i != 1] for e in report["variants"]]
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]

    def line(cells):
        return "  ".join(str(c).ljust(w) if i in (0, len(cells) - 1) else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


# How many classes the per-class table shows: beyond it, those that drop most.
MAX_CLASS_ROWS = 20


CONFUSIONS_SHOWN = 3


def paired_section(report, decision):
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


def per_class_section(report, decision):
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
