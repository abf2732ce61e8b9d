"""Tests for job/stages.py (the stage runner), export/run.py and report/run.py.

The runner's order, skips and bookkeeping with stand-in stages; then all five
stages over one run directory, through train.py.
"""

import importlib
import json
import shutil
import zipfile

import numpy as np
import pytest
from jobs import QUICK, run_train

from job import config as config_lib
from job import stages
from rundir import RunDir

# What TensorFlow Lite's GPU delegate runs through MediaPipe 0.10.35 (export/gpu.py): the
# files with float32 input, int8_float_io's integer graph included. The uint8-input ones it
# takes whole but MediaPipe's GPU path cannot feed (it writes float32 tensors), it leaves
# all of int16x8 to the CPU, and 0.10.35 cannot load int4 at all.
GPU_RUNS = {"float32", "fp16", "dynamic", "int8_float_io"}


# ---- the runner ----

# Each stage's function, the library call it makes, and the configuration section it passes.
STAGE_CALLS = {"train": ("training.loop", "train", "train_cfg", "train"),
               "qat": ("quantization.finetune", "fine_tune", "qat_cfg", "qat"),
               "export": ("export.run", "export_run", "export_cfg", "export"),
               "report": ("report.run", "report_run", "report_cfg", "report"),
               "bundle": ("export.bundles", "bundle_run", None, None)}


@pytest.mark.parametrize("stage", config_lib.STAGES)
def test_each_stage_runs_its_stage_on_the_job_s_run_and_section(stage, tmp_path, monkeypatch):
    module, function, keyword, section = STAGE_CALLS[stage]
    calls = []

    def stand_in(run, *args, **kwargs):
        calls.append((run, kwargs))
        return {"test_top1": 0.5, "images_per_second": 1.0} if stage != "export" else ["a"]

    monkeypatch.setattr(importlib.import_module(module), function, stand_in)
    monkeypatch.setattr("report.tables.render_table", lambda report: "table")
    monkeypatch.setattr("report.decision_table.target_lines", lambda report: [])
    config = config_lib.resolve()
    run = RunDir(tmp_path / "run")
    run.write_json(run.report_json, {})
    job = stages.Job(config=config, run=run, dataset=type("D", (), {"class_names": ("a",)}))
    job.__dict__["calibration"] = "calibration images"
    assert isinstance(stages.STAGE_FUNCTIONS[stage](job), dict)
    [(called_run, kwargs)] = calls
    assert called_run is run
    if keyword:
        assert kwargs[keyword] is getattr(config, section)


def test_stages_run_in_order_and_a_resume_skips_finished_ones(tmp_path, monkeypatch):
    calls = []
    for stage in config_lib.STAGES:
        monkeypatch.setitem(stages.STAGE_FUNCTIONS, stage,
                            lambda job, stage=stage: calls.append(stage) or {})
    config = config_lib.resolve(overrides={"stages": "report,train"})
    run = RunDir(tmp_path / "run")
    run.write_json(run.manifest, {})  # what report reads, as if exported before
    stages.run(config, run)
    assert calls == ["train", "report"]
    assert run.read_json(run.state) == {"completed": ["train", "report"]}
    config = config_lib.resolve()
    stages.run(config, run, skip_completed=True)
    assert calls == ["train", "report", "qat", "export", "bundle"]
    assert run.read_json(run.config)["stages"] == list(config_lib.STAGES)
    # Stage times accumulate over invocations: the first run's stages are kept.
    assert list(run.read_json(run.timing)["stages"]) == list(config_lib.STAGES)


# ---- all stages, end to end ----

def test_all_stages_write_report_and_files(finished_run):
    run_dir, stdout = finished_run
    for stage in config_lib.STAGES:
        assert f"[{stage}] done in" in stdout
    report = json.loads((run_dir / "report.json").read_text())
    variants = [e["variant"] for e in report["variants"]]
    assert variants == ["keras_float", "keras_qat", "float32", "fp16", "dynamic", "int8",
                        "int8_qat", "int8_float_io", "int16x8", "int4_weights"]
    assert report["num_test"] == 360 and report["num_classes"] == 10
    # QAT judged fairly: the QAT Keras model is measured itself and int8_qat against it.
    qat_result = json.loads((run_dir / "qat_result.json").read_text())
    assert report["qat"]["keras_top1"] == report["variants"][1]["top1"]
    assert report["qat"]["keras_top1"] == pytest.approx(qat_result["test_top1"], abs=1e-6)
    assert report["qat"]["epochs"] == qat_result["epochs"] == 1
    # The conversion's fidelity, recomputed from the files themselves.
    from datasets import load_dataset
    from export import runtime
    from quantization.qat import load_qat_model
    images, _ = load_dataset("digits").test_arrays()
    keras_qat = load_qat_model(run_dir / "qat.keras").predict(images.astype("float32"), verbose=0)
    int8_qat = runtime.predict_tflite(run_dir / "export" / "resnet20_int8_qat.tflite", images)
    assert report["qat"]["int8_qat_agreement"] == np.mean(
        keras_qat.argmax(-1) == int8_qat.argmax(-1))
    assert report["decision"]["qat"]["conversion_agreement"] == report["qat"]["int8_qat_agreement"]
    # Image by image: the QAT file's 2x2 table against the QAT Keras model, from the files.
    labels = load_dataset("digits").test_arrays()[1]
    against = report["qat"]["against_keras_qat"]
    assert against["reference_only"] == int(np.sum((keras_qat.argmax(-1) == labels)
                                                   & (int8_qat.argmax(-1) != labels)))
    assert sum(against[k] for k in ("both_right", "reference_only", "variant_only",
                                    "both_wrong")) == 360
    decision = report["decision"]
    assert (decision["budget_points"], decision["class_budget_points"],
            decision["confidence"]) == (1.0, 3.0, 0.95)
    assert decision["paired"] and report["class_names"] == [str(i) for i in range(10)]
    assert report["machine"]["cpu"]["source"] == "/proc/cpuinfo"
    for entry in report["variants"][2:]:
        assert (run_dir / "export" / entry["file"]).stat().st_size == entry["size_bytes"]
        assert entry["latency_ms"]["1_thread"]["median_ms"] > 0
        assert entry["edgetpu"]["compatible"] == (entry["variant"] in ("int8", "int8_qat"))
        gpu = entry["gpu_delegate"]
        assert gpu["ops"] == entry["xnnpack"]["ops"] and gpu["images"] == 8
        assert gpu["ran"] == (entry["variant"] in GPU_RUNS), (entry["variant"], gpu)
        if gpu["ran"]:
            assert (gpu["gpu_ops"], gpu["cpu_ops"], gpu["error"]) == (gpu["ops"], 0, None)
            assert gpu["agreement"] >= 0.75
        placement = entry["xnnpack"]
        if entry["variant"] in ("float32", "fp16", "dynamic", "int8", "int8_qat"):
            # One partition: every op between the int8 input and output conversions on
            # XNNPACK (the others: tests/test_runtime.py).
            assert placement["partitions"] == 1
            assert placement["not_delegated"] == (
                {"QUANTIZE": 2, "SOFTMAX": 1} if entry["variant"].startswith("int8") else {})
    float32 = report["variants"][2]
    assert float32["agreement"] >= 0.997
    markdown = (run_dir / "report.md").read_text()
    assert all(v in markdown for v in variants)
    assert (run_dir / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert report["diagnosis"]["layers"], "per-layer int8 diagnosis is in the report"
    assert report["mediapipe_check"] == {"checked": True, "images": 8}
    gpu = {entry["variant"]: entry["gpu_delegate"] for entry in report["variants"][2:]}
    assert gpu["int8"]["gpu_ops"] == gpu["int8"]["ops"]
    assert "ToTensorConverter" in gpu["int8"]["error"]
    assert (gpu["int16x8"]["gpu_ops"], gpu["int16x8"]["fallback"]["DEQUANTIZE"]) == (
        0, "Unsupported dequantization type.")
    assert gpu["int4_weights"]["gpu_ops"] is None
    assert "## Android GPU delegate" in markdown and "Not checked" not in markdown
    table = stdout[stdout.index("[report] started"):]
    assert "Edge TPU" in table and all(v in table for v in variants)


def test_each_target_gets_a_file_its_runtime_ran_and_a_bundle_of_it(finished_run):
    run_dir, stdout = finished_run
    report = json.loads((run_dir / "report.json").read_text())
    targets = {t["target"]: t for t in report["decision"]["targets"]}
    assert list(targets) == ["android_cpu", "android_gpu", "edgetpu", "litert_cpu"]
    assert targets["android_gpu"]["pick"] in GPU_RUNS
    assert {r["variant"] for r in targets["android_gpu"]["refused"]} >= {"int8", "int8_qat"}
    assert targets["android_cpu"]["runs"][0]["verified_on"].startswith("MediaPipe Tasks ")
    assert report["decision"]["ship"] == targets["android_cpu"]["pick"]
    bundled = sorted(p.name for p in (run_dir / "bundles").iterdir())
    assert bundled == sorted(name for name, t in targets.items() if t["pick"])
    for name in bundled:
        card = json.loads((run_dir / "bundles" / name / "model_card.json").read_text())
        target = targets[name]
        assert card["report"]["variant"] == target["pick"]
        assert card["target"]["verified_on"] == next(
            c["verified_on"] for c in target["runs"] if c["variant"] == target["pick"])
        assert target["pick"] not in {r["variant"] for r in target["refused"]}
        assert card["labels"] == [str(i) for i in range(10)]
    # The job's last lines: one per target, the file or why there is none.
    tail = stdout[stdout.index("[bundle] started"):]
    for target in targets.values():
        assert f"  {target['title']}: " in tail


def test_a_bfloat16_trained_model_is_saved_quantized_and_exported_in_float32(finished_run):
    run_dir, stdout = finished_run
    from export import tflite_file
    from rundir import RunDir
    run = RunDir(run_dir)
    assert run.read_json(run.train_result)["precision"] == {
        "policy": "mixed_bfloat16", "reason": "--train.mixed_precision bfloat16"}
    assert "precision mixed_bfloat16" in stdout
    for path in (run.last_model, run.qat_model):
        with zipfile.ZipFile(path) as archive:
            config = archive.read("config.json").decode()
        assert "bfloat16" not in config and "mixed_" not in config, path
    for entry in json.loads((run_dir / "report.json").read_text())["variants"][2:]:
        dtypes = {t.dtype for t in tflite_file.read(run_dir / "export" / entry["file"]).tensors}
        assert "BFLOAT16" not in dtypes
        assert ("FLOAT16" in dtypes) == (entry["variant"] == "fp16"), entry["variant"]


def test_the_train_stage_says_whether_onednn_is_on_and_why(finished_run):
    run_dir, stdout = finished_run
    from resnet_keras.backend import ONEDNN
    from rundir import RunDir
    run = RunDir(run_dir)
    # train.py ran in a child process with this one's environment: the same decision.
    assert run.read_json(run.train_result)["onednn"] == ONEDNN.to_dict()
    assert ONEDNN.describe() in stdout


def _listing(folder):
    """Every file under `folder` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


def test_the_report_stage_writes_only_its_report(finished_run, tmp_path):
    run_dir = tmp_path / "run"  # a copy: the finished run is shared
    shutil.copytree(finished_run[0], run_dir)
    before = _listing(run_dir)
    result = run_train(["--stages", "report", "--run-dir", str(run_dir),
                        "--report.latency_runs", "3", "--report.budget_points", "2.5",
                        "--report.mediapipe_images", "0"], timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[train]" not in result.stdout and "[report] done in" in result.stdout
    after = _listing(run_dir)
    # The pipeline's own bookkeeping aside, only report.* changed or appeared.
    changed = {name for name in after if before.get(name) != after[name]}
    assert changed - {"config.json", "state.json", "timing.json", "lock"} == {
        "report.json", "report.md", "report.png"}
    assert set(before) <= set(after)
    # The report section reaches the decision from the command line.
    assert json.loads((run_dir / "report.json").read_text())["decision"]["budget_points"] == 2.5


@pytest.mark.slow
def test_the_report_keeps_the_worst_layers_in_float_both_ways(finished_run, tmp_path, digits):
    """The selective branch, inside the report: forced by a threshold below any drop.

    On digits int8 loses nothing, so no configuration reaches this branch
    (`report.selective_threshold` >= 0): the test calls the stage's function
    with -1. Only float32 and int8 are kept, to measure little.
    """
    import dataclasses

    from export.run import calibration_set
    from report.run import report_run

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run[0], run_dir)
    run = RunDir(run_dir)
    manifest = run.read_json(run.manifest)
    run.write_json(run.manifest, {k: manifest[k] for k in ("float32", "int8")})
    defaults = config_lib.Config()
    report = report_run(run, digits, model_name="resnet20",
                        report_cfg=dataclasses.replace(defaults.report, latency_runs=2,
                                                       selective_threshold=-1.0,
                                                       mediapipe_images=0),
                        calibration=calibration_set(digits, size=32))
    selective = report["diagnosis"]["selective"]
    assert selective["applied"] and selective["denylist"]
    recipe = selective["recipe"]
    assert recipe["keep_float"] and 0 <= recipe["top1"] <= 1
    # The recipe keeps the Keras layers behind the converter's denylist in float.
    picked = [layer for layer in report["diagnosis"]["layers"]
              if layer["tensor_name"] in selective["denylist"]]
    assert set(recipe["keep_float"]) == {n for layer in picked for n in layer["keras_layers"]}
    floating = recipe["float_conv_outputs"]  # read from the file before it was deleted
    kept_convs = [n for n in recipe["keep_float"] if n.endswith("_conv")]
    assert all(any(f"/{n}/" in f for f in floating) for n in kept_convs), (kept_convs, floating)
    # A diagnosis, not a file to ship: nothing was written beside the exports.
    assert sorted(p.name for p in (run_dir / "export").iterdir()) == sorted(
        [*run.read_json(run.manifest).values(), "manifest.json"])
    assert report["decision"]["selective"]["layers_in_float"] == len(selective["denylist"])
    markdown = (run_dir / "report.md").read_text()
    assert "selective int8, litert-quantizer recipe (" in markdown
    assert f"{', '.join(recipe['keep_float'])} in float)" in markdown


def test_stages_need_what_earlier_stages_make(tmp_path):
    run_dir = tmp_path / "empty"
    result = run_train(["--stages", "qat", "--run-dir", str(run_dir), *QUICK], timeout=300)
    assert result.returncode == 2 and "has no trained model" in result.stderr
    assert "--stages train" in result.stderr and "Traceback" not in result.stderr
    result = run_train(["--stages", "report", "--run-dir", str(run_dir)], timeout=300)
    assert result.returncode == 2 and "has no exported models" in result.stderr


def test_unknown_export_variant(tmp_path):
    result = run_train(["--stages", "export", "--run-dir", str(tmp_path / "r"),
                        "--export.variants", "int4"], timeout=300)
    assert result.returncode == 2
    assert ("export.variants='int4' is not valid. Valid values: float32, fp16, dynamic, int8, "
            "int8_qat, int8_float_io, int16x8, int4_weights") in result.stderr


@pytest.mark.slow
def test_default_job_meets_the_targets(tmp_path):
    """`python train.py` as a user runs it: float >= 97%, int8 within 1 point, int8 small."""
    run_dir = tmp_path / "default"
    result = run_train(["--run-dir", str(run_dir)], timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((run_dir / "report.json").read_text())
    by_name = {e["variant"]: e for e in report["variants"]}
    assert by_name["keras_float"]["top1"] >= 0.97
    for variant in ("int8", "int8_qat"):
        assert by_name[variant]["top1_delta_points"] >= -1.0
        assert by_name[variant]["size_bytes"] <= 0.3 * by_name["float32"]["size_bytes"]


def test_the_report_says_why_mediapipe_was_not_run(tmp_path, monkeypatch):
    from report import run as report_run

    monkeypatch.setenv("RESNET_KERAS_CACHE", str(tmp_path))  # no MediaPipe environment there
    pythons, check = report_run._mediapipe_check(50)
    assert pythons == {} and not check["checked"]
    assert "python -m export.mediapipe_client builds them" in check["reason"]
    assert report_run._mediapipe_check(0) == ({}, {"checked": False,
                                               "reason": "--report.mediapipe_images is 0"})
