"""The `bundle` stage of train.py: one folder per deployment target, with the file picked for it.

The report stage decides (report/decide.py) and saves the decision; this stage
only follows it, as TFX's Pusher ships what its Evaluator blessed. Each
`bundles/<target>/` holds the picked `.tflite`, `labels.txt` and a model card
(export/android.py) whose `target` block names the runtime and version the
file was proven on. A target with no pick gets no folder, and a file the
target's runtime refused is never bundled.

    >>> bundle_run(run, labels=dataset.class_names)
    {'android_cpu': PosixPath('runs/x/bundles/android_cpu'), ...}
"""

import shutil

from export import android
from export.run import load_manifest

# The keys of a target's decision and of its pick that the model card carries.
_TARGET_KEYS = ("target", "title", "runtime", "why")
_PICK_KEYS = ("variant", "proof", "verified_on", "top1", "delta_points", "budget",
              "images_needed")


def target_card(target, pick):
    """The model card's `target` block: where the file goes, and on what it was proven.

    Args:
        target: one entry of report.json's `decision.targets`.
        pick: the entry of `target["runs"]` for the picked file.

    Returns:
        dict: `target`, `title`, `runtime`, `why`, the pick's `variant`,
        `proof`, `verified_on` (the runtime and version that ran it),
        `top1`, `delta_points`, `budget`, `images_needed`, and
        `interval_points` (None without image-by-image counts).
    """
    comparison = pick.get("comparison") or {}
    return {**{key: target.get(key) for key in _TARGET_KEYS},
            **{key: pick.get(key) for key in _PICK_KEYS},
            "interval_points": comparison.get("interval_points")}


def bundle_run(run, *, labels):
    """Writes `bundles/<target>/` for every target report.json picked a file for.

    A re-run replaces every bundle: the folders follow the latest decision only.

    Args:
        run: a `rundir.RunDir` with report.json and its exported files.
        labels: the class names, one per model output.

    Returns:
        dict {target name: bundle folder}, in the decision's order.

    Raises:
        FileNotFoundError: no report.json, or a picked file is missing.
        ValueError: report.json has no per-target decision, or it picks a
            file that its target's runtime refused or never ran.
    """
    report = run.read_json(run.require(run.report_json, what="report", stage="report"))
    decided = (report.get("decision") or {}).get("targets")
    if decided is None:
        raise ValueError(f"{run.report_json} has no per-target decision (decision.targets): "
                         f"it predates it. Run the report stage again: python train.py "
                         f"--stages report,bundle --run-dir {run.root}")
    paths = load_manifest(run)
    entries = {entry["variant"]: entry for entry in report["variants"]}
    picks = [(target, _ran_there(target, run)) for target in decided if target["pick"]]
    shutil.rmtree(run.bundles_dir, ignore_errors=True)
    return {target["target"]: android.write_bundle(
                paths[pick["variant"]], out_dir=run.bundle(target["target"]), labels=labels,
                report_entry=entries[pick["variant"]], target=target_card(target, pick))
            for target, pick in picks}


def _ran_there(target, run):
    """The pick's entry in `target["runs"]`, checked before any folder is touched.

    Raises:
        ValueError: the pick is not among the files the target's runtime ran.
    """
    pick = next((c for c in target["runs"] if c["variant"] == target["pick"]), None)
    if pick is None:
        raise ValueError(f"{run.report_json} picks {target['pick']} for {target['target']}, "
                         f"but its runtime did not run it there; run the report stage again "
                         f"rather than editing its decision.")
    return pick
