"""The report's chart, report.png: accuracy against size and latency, and recall change per class.

    >>> render_chart(report, "runs/x/report.png")
"""

import pathlib

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from report.decide import check, class_name, latency, reference, saved_decision
from report.tables import MAX_CLASS_ROWS


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
    decision = saved_decision(report)
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
