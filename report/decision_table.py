"""Renders report.json's per-target decision: which file goes to which device, and why.

The table opens report.md; `target_lines` gives the same answer as one line per
target, for the end of `python train.py`. Both read `decision.targets` only
(report/decide.py made it): nothing here decides.

    >>> print("\n".join(target_lines(report)))
    Android CPU: resnet20_int8.tflite, 302.7 KiB, -0.28 (95% CI -0.62 to +0.06) points, ran on ...
"""

from report.markdown import DASH, interval_words, kib, md_table, worst_end

_HEADERS = ["target", "file", "size KiB", "Δ top-1 (points)", "proven on"]


def _pick(target):
    return next((c for c in target["runs"] if c["variant"] == target["pick"]), None)


def _delta_words(candidate, confidence):
    comparison = candidate.get("comparison")
    if candidate.get("delta_points") is None:
        return DASH
    words = f"{candidate['delta_points']:+.2f}"
    if comparison:
        words += f" ({interval_words(comparison['interval_points'], confidence)})"
    return words


def _proof_words(candidate):
    verb = {"ran": "ran on", "compiler": "compiled by", "rules": "passes"}[candidate["proof"]]
    return f"{verb} {candidate['verified_on'] or 'an unnamed runtime'}"


def _row(target, confidence):
    pick = _pick(target)
    if pick is None:
        return [target["title"], DASH, DASH, DASH, f"no file: {_why(target)}"]
    return [target["title"], f"`{pick['file']}`", kib(pick.get("size_bytes")),
            _delta_words(pick, confidence), _proof_words(pick)]


def _why(target):
    """Why the target has its pick, or none, in a clause."""
    return {"within_budgets": "the smallest file within the budgets",
            "float32_fallback": "no smaller file is shown within the budgets; float32 computes "
                                "what Keras float computes",
            "none_within_budgets": "no file that runs there is shown within the budgets",
            "none_runs": "none of the files runs there",
            "not_checked": (target.get("not_checked") or {}).get("reason", "not checked"),
            }[target["why"]]


def refusal_words(candidate, decision):
    """Why a file that runs was not picked: a predicate, to follow the file's name.

    The decision table's notes and the verdict's refusals both say it this way.
    """
    budget = decision["budget_points"]
    if candidate["budget"] == "outside":
        return (f"loses {-candidate['comparison']['difference_points']:.2f} points, outside "
                f"the {budget:g}-point budget")
    if candidate["budget"] == "unproven":
        needed = candidate.get("images_needed")
        return (f"has an interval reaching {worst_end(candidate['worst_points'], budget)} points, "
                f"not shown within the {budget:g}-point budget on {decision['num_test']:,} "
                f"test images; "
                + (f"at the disagreement measured, {needed:,} would show it" if needed else
                   "more test images, a wider --report.budget_points or a lower "
                   "--report.confidence would decide it"))
    if candidate.get("within_class_budget") is False:
        worst = candidate["classes"]["over_budget"][0]
        return (f"loses {-worst['change_points']:.2f} points of recall on class {worst['name']} "
                f"({100 * worst['recall']:.2f}% against {100 * worst['reference_recall']:.2f}% "
                f"on {worst['count']} images), over the "
                f"{decision['class_budget_points']:g}-point per-class budget")
    return "is not judged: there are no image-by-image counts"


def target_details(target, decision):
    """Bullet lines under the table for one target: the files it did not take, and why."""
    lines = []
    passed = [c for c in target["runs"] if c["variant"] != target["pick"] and not c["good"]]
    for candidate in passed:
        lines.append(f"    - {candidate['variant']} runs there, but "
                     f"{refusal_words(candidate, decision)}")
    for refused in target["refused"]:
        lines.append(f"    - {refused['variant']} does not run there: {refused['reason']}")
    unseen = target.get("not_checked")
    if unseen:
        lines.append(f"    - {', '.join(unseen['variants'])}: {unseen['reason']}")
    if not lines:
        return []
    return [f"- **{target['title']}** ({target['runtime']}):"] + lines


def render_table(decision):
    """The per-target table alone: target, file, size, Δ top-1 with its interval, proof.

    Args:
        decision: report.json's `decision`, with `targets`.

    Returns:
        The Markdown table as a str.
    """
    return md_table(_HEADERS, [_row(t, decision["confidence"]) for t in decision["targets"]],
                    align="llrll")


def render_section(decision):
    """The report's opening section: the per-target table, then each target's other files.

    Args:
        decision: report.json's `decision`, with `targets`.

    Returns:
        list of Markdown lines.
    """
    lines = ["## Which file goes to which device", "", render_table(decision), "",
             f"A file is picked for a device only where that device's runtime ran it; of those, "
             f"the smallest whose paired interval against Keras float stays within the "
             f"{decision['budget_points']:g}-point top-1 budget at its worst end and whose "
             f"every class loses at most {decision['class_budget_points']:g} points of recall. "
             f"Files that run there and are not picked, and files that do not run there, "
             f"with the runtime's own reason:", ""]
    for target in decision["targets"]:
        lines += target_details(target, decision)
    return lines


def target_lines(report):
    """One line per target: the file picked and its figures, or why there is none.

    Args:
        report: the report dict, with its `decision`.

    Returns:
        list of str.
    """
    decision = report["decision"]
    lines = []
    for target in decision["targets"]:
        pick = _pick(target)
        if pick is None:
            lines.append(f"{target['title']}: no file ({_why(target)})")
            continue
        lines.append(f"{target['title']}: {pick['file']}, {kib(pick.get('size_bytes'))} KiB, "
                     f"{_delta_words(pick, decision['confidence'])} points, "
                     f"{_proof_words(pick)}")
    return lines
