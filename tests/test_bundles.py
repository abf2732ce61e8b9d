"""Tests for export/bundles.py: one folder per target, from report.json's decision only."""

import json
import os
import pathlib

import pytest
import tiny_classifier  # tests/ is on sys.path under pytest

from export import bundles, metadata
from rundir import RunDir

LABELS = tiny_classifier.LABELS
GPU_ERROR = "ToTensorConverter: input data size does not match expected size"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A run directory with a float32 and an int8 file, each with metadata, and its manifest."""
    run = RunDir(tmp_path_factory.mktemp("run"))
    os.makedirs(run.export_dir)
    model = tiny_classifier.model()
    files = {}
    for variant in tiny_classifier.VARIANTS:
        path = run.exported_file(f"tiny_{variant}.tflite")
        with open(path, "wb") as f:
            f.write(tiny_classifier.tflite_bytes(variant, model))
        metadata.write(path, labels=LABELS, version="test")
        files[variant] = path
    run.write_json(run.manifest, {v: f"tiny_{v}.tflite" for v in files})
    return run, files


def _runs(variant, path, verified_on):
    return {"variant": variant, "file": path.rsplit("/", 1)[-1], "proof": "ran",
            "verified_on": verified_on, "top1": 0.9, "delta_points": -0.1, "budget": "within",
            "images_needed": None, "good": True, "size_bytes": 1,
            "comparison": {"interval_points": [-0.5, 0.3]}}


def _report(files, *, gpu_pick="float32"):
    """report.json deciding: int8 to the Android CPU, float32 to its GPU, none to the Edge TPU."""
    cpu, gpu = "MediaPipe Tasks 1.2.2", "MediaPipe Tasks 0.10.35, OpenGL ES 3.2 Mesa"
    variants = [{"variant": v, "file": os.path.basename(p), "size_bytes": os.path.getsize(p),
                 "top1": 0.9, "top5": None, "top1_delta_points": -0.1, "agreement": 1.0}
                for v, p in files.items()]
    targets = [
        {"target": "android_cpu", "title": "Android CPU", "runtime": "MediaPipe, CPU",
         "why": "within_budgets", "pick": "int8", "refused": [], "not_checked": None,
         "runs": [_runs("int8", files["int8"], cpu), _runs("float32", files["float32"], cpu)]},
        {"target": "android_gpu", "title": "Android GPU", "runtime": "MediaPipe, GPU",
         "why": "within_budgets", "pick": gpu_pick, "not_checked": None,
         "runs": [_runs("float32", files["float32"], gpu)],
         "refused": [{"variant": "int8", "proof": "ran", "verified_on": gpu,
                      "reason": GPU_ERROR}]},
        {"target": "edgetpu", "title": "Coral Edge TPU", "runtime": "rules", "why": "none_runs",
         "pick": None, "runs": [], "not_checked": None,
         "refused": [{"variant": "float32", "proof": "rules", "verified_on": "rules",
                      "reason": "not 8-bit"}]},
    ]
    return {"variants": variants, "decision": {"targets": targets, "ship": "int8"}}


def test_each_target_gets_its_pick_and_a_card_naming_the_runtime(exported):
    run, files = exported
    run.write_json(run.report_json, _report(files))
    written = bundles.bundle_run(run, labels=LABELS)
    assert list(written) == ["android_cpu", "android_gpu"]  # the Edge TPU has no pick
    assert sorted(p.name for p in (written["android_gpu"]).iterdir()) == [
        "labels.txt", "model_card.json", "tiny_float32.tflite"]
    card = json.loads((written["android_cpu"] / "model_card.json").read_text())
    assert card["model_file"] == "tiny_int8.tflite"
    assert card["target"]["verified_on"] == "MediaPipe Tasks 1.2.2"
    assert card["target"]["interval_points"] == [-0.5, 0.3]
    assert card["report"]["variant"] == "int8"


def test_a_file_the_targets_runtime_refused_is_never_bundled(exported):
    run, files = exported
    run.write_json(run.report_json, _report(files))
    bundles.bundle_run(run, labels=LABELS)
    # A hand-edited decision that sends the refused int8 file to the GPU.
    run.write_json(run.report_json, _report(files, gpu_pick="int8"))
    with pytest.raises(ValueError, match="picks int8 for android_gpu, but its runtime did not"):
        bundles.bundle_run(run, labels=LABELS)
    # Refused before any folder was touched: the earlier bundles stand as they were.
    gpu_folder = run.bundle("android_gpu")
    assert sorted(p.name for p in pathlib.Path(gpu_folder).iterdir()) == [
        "labels.txt", "model_card.json", "tiny_float32.tflite"]


def test_a_report_without_a_per_target_decision_is_refused(exported):
    run, files = exported
    run.write_json(run.report_json, {"variants": [], "decision": {"ship": "int8"}})
    with pytest.raises(ValueError, match="predates it. Run the report stage again"):
        bundles.bundle_run(run, labels=LABELS)
