"""The `report` stage of train.py: every exported file measured, on each target's runtime too.

`report_run` evaluates each file with LiteRT (export/runtime.py) next to the
Keras float model, runs it on each deployment target's runtime (MediaPipe
Tasks on the CPU and the GPU delegate, the Edge TPU check), decides which file
goes to which target (report/decide.py), and writes report.json, then
report.md and report.png from it: nothing else. Every model's top-1 class of
each test image is kept in memory, so that each comparison is paired image by
image (report/statistics.py); report.json holds the counts, not the images.
"""

import datetime
import logging
import os
import platform
import tempfile

import numpy as np

from datasets.input_pipeline import array_batches
from export import edgetpu, gpu, mediapipe_client, quantizer, runtime, tflite_file
from export.run import load_manifest
from quantization.qat import quantize_scope
from report import decide, diagnose, host, statistics
from report import render as report_lib
from rundir.model_files import load_float_model, load_qat_model

logger = logging.getLogger(__name__)


def _entry(variant, *, file, scores, labels, reference, float_top1, latency=None, check=None,
           xnnpack=None, litert=None, android=None):
    metrics = runtime.classification_metrics(scores, labels, reference_predictions=reference)
    return {
        "variant": variant,
        "file": os.path.basename(file) if file else None,
        "size_bytes": os.path.getsize(file) if file else None,
        "top1": metrics["top1"],
        "top5": metrics["top5"],
        "top1_delta_points": round(100 * (metrics["top1"] - float_top1), 4),
        "agreement": metrics["agreement"],
        "latency_ms": latency,
        "edgetpu": check,
        "xnnpack": xnnpack,
        "litert": litert,
        **(android or {"mediapipe_cpu": None, "gpu_delegate": None}),
        **statistics.image_by_image(labels, reference.argmax(-1), scores.argmax(-1),
                                    num_classes=reference.shape[-1]),
    }


def _counts(reference_name, reference, predictions, labels):
    """The 2x2 table of `predictions` (top-1 classes) against another model's."""
    return {"reference": reference_name,
            **statistics.paired_counts(reference == labels, predictions == labels)}


def _selective(model, calibration, layers, *, out_dir, name, images, labels, reference,
               float_top1, int8_top1, threshold, float_data):
    """Keeps the worst layers in float when the int8 drop exceeds `threshold` points.

    Two ways, measured side by side: the converter's QuantizationDebugger with
    a denylist (report/diagnose.py), and, from `float_data` (the float32
    file's bytes), a litert-quantizer recipe that leaves the same Keras layers
    unquantized. A diagnosis, not a file to ship: both are made in `out_dir`, a
    scratch folder, and only their measurements are kept.
    """
    drop = 100 * (float_top1 - int8_top1)
    if drop <= threshold:
        return {"applied": False, "int8_drop_points": round(drop, 4),
                "threshold_points": threshold,
                "reason": f"int8 PTQ drop {drop:.2f} points is within the "
                          f"{threshold:g}-point threshold"}
    denylist = diagnose.pick_denylist(layers)
    path = os.path.join(out_dir, f"{name}_int8_selective.tflite")
    with open(path, "wb") as f:
        f.write(diagnose.selective_int8(model, calibration, denylist=denylist))
    entry = _entry("int8_selective", file=path,
                   scores=runtime.predict_tflite(path, images), labels=labels,
                   reference=reference, float_top1=float_top1)
    keep = list(dict.fromkeys(layer for picked in layers if picked["tensor_name"] in denylist
                              for layer in picked["keras_layers"]))
    recipe_path = os.path.join(out_dir, f"{name}_int8_selective_recipe.tflite")
    with open(recipe_path, "wb") as f:
        f.write(quantizer.selective_int8(float_data, calibration_images=calibration,
                                         keep_float=keep))
    recipe_entry = _entry("int8_selective_recipe", file=recipe_path,
                          scores=runtime.predict_tflite(recipe_path, images), labels=labels,
                          reference=reference, float_top1=float_top1)
    recipe = {"keep_float": keep, "float_conv_outputs": _float_conv_outputs(recipe_path),
              **recipe_entry}
    return {"applied": True, "int8_drop_points": round(drop, 4), "threshold_points": threshold,
            "denylist": denylist, **entry, "recipe": recipe}


def _float_conv_outputs(path):
    """The output tensors of the file's CONV_2D ops whose weights stayed float32."""
    graph = tflite_file.read(path)
    return sorted(graph.tensors[op.outputs[0]].name for op in graph.ops
                  if op.name == "CONV_2D" and graph.tensors[op.inputs[1]].dtype == "FLOAT32")


def _mediapipe_check(count):
    """({delegate: its MediaPipe environment's python}, report.json's `mediapipe_check`)."""
    pythons = {d: mediapipe_client.environment(d) for d in mediapipe_client.DELEGATES}
    if count and all(pythons.values()):
        return pythons, {"checked": True, "images": count}
    reason = ("--report.mediapipe_images is 0" if not count else
              "MediaPipe's environments are not built; python -m export.mediapipe_client "
              "builds them (pip, about 100 MB each), then python train.py --stages "
              "report,bundle --run-dir <run> checks again")
    return {}, {"checked": False, "reason": reason}


def _android(pythons, path, images, litert_top1):
    """MediaPipe Tasks' answers on the CPU and through the GPU delegate: two targets' evidence."""
    cpu = mediapipe_client.classify(pythons["cpu"], path, images, delegate="cpu")
    ran = "index" in cpu
    mediapipe_cpu = {
        "runner": f"MediaPipe Tasks {cpu.get('version') or '(version unknown)'}",
        "ran": ran, "error": cpu.get("error"), "images": len(images),
        # Its top-1 against LiteRT's on the same images: the file runs there as it does here.
        "agreement": float(np.mean(np.asarray(cpu["index"]) == litert_top1[:len(images)]))
        if ran else None}
    # The GPU's environment compares the GPU with its own release's CPU run.
    return {"mediapipe_cpu": mediapipe_cpu, "gpu_delegate": gpu.check(pythons["gpu"], path, images)}


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _check_exports_fit(run, paths, *, image_shape, num_classes):
    """Refuses, before anything is measured, a file that is not an export of this run's model.

    Raises:
        ValueError: a file's input shape or class count differs from the model's;
            the message names the file and both shapes.
    """
    for path in paths.values():
        interpreter = runtime.load_interpreter(path)
        takes = tuple(int(d) for d in interpreter.get_input_details()[0]["shape"][1:])
        gives = int(interpreter.get_output_details()[0]["shape"][-1])
        if takes != tuple(image_shape) or gives != num_classes:
            raise ValueError(
                f"{path} takes {takes} images and gives {gives} scores, but the run's model "
                f"takes {tuple(image_shape)} and gives {num_classes}: it is not an export of "
                f"this run. Export again: python train.py --stages export --run-dir "
                f"{run.root}")


def report_run(run, dataset, *, model_name, report_cfg, calibration, allow_unsafe=False) -> dict:
    """Measures the Keras float model and every exported file, decides, and writes the report.

    Args:
        run: a `rundir.RunDir` with exported files.
        dataset: the run's `datasets.Dataset` (its test split is measured).
        model_name: str, the job's `model.name`, as the report names the net.
        report_cfg: the job's `report` section (`job.config.ReportConfig`):
            the budgets and confidence the decision judges by, the targets,
            `latency_runs`, `selective_threshold` and `mediapipe_images`.
        calibration: the run's calibration images (`export.run.calibration_set`),
            for the int8 diagnosis.
        allow_unsafe: bool, as `rundir.model_files.load_model`.

    Returns:
        The report dict (as written to report.json), its `decision` included.

    Raises:
        FileNotFoundError: the run has no exported files yet.
    """
    paths = load_manifest(run)
    model = load_float_model(run, allow_unsafe=allow_unsafe)
    images, labels = dataset.test_arrays()
    labels = np.asarray(labels)
    _check_exports_fit(run, paths, image_shape=images.shape[1:], num_classes=dataset.num_classes)
    reference = model.predict(array_batches(images.astype("float32"), batch_size=64), verbose=0)
    float_top1 = runtime.classification_metrics(reference, labels)["top1"]
    measure = {"labels": labels, "reference": reference, "float_top1": float_top1}
    entries = [_entry("keras_float", file=None, scores=reference, **measure)]
    qat_scores = _keras_qat(run, paths, images, allow_unsafe=allow_unsafe)
    keras_qat = (_entry("keras_qat", file=None, scores=qat_scores, **measure)
                 if qat_scores is not None else None)
    entries += [keras_qat] if keras_qat else []
    pythons, mediapipe_check = _mediapipe_check(report_cfg.mediapipe_images)
    top1_classes = {}  # each file's top-1 class per test image, for the QAT comparisons
    # All files timed in the same turns, so that their ratios hold under load.
    latencies = {threads: runtime.measure_latency(paths, num_threads=count,
                                                  runs=report_cfg.latency_runs)
                 for threads, count in (("1_thread", 1), ("all_threads", os.cpu_count()))}
    with tempfile.TemporaryDirectory() as scratch:  # the compiler's output: measured, not kept
        for variant, path in paths.items():
            interpreter = runtime.load_interpreter(path)
            scores = runtime.predict_tflite(interpreter, images)
            top1_classes[variant] = scores.argmax(-1)
            entries.append(_entry(
                variant, file=path, scores=scores, **measure,
                latency={threads: timed[variant] for threads, timed in latencies.items()},
                check=edgetpu.check(path, out_dir=scratch),
                xnnpack=runtime.xnnpack_placement(interpreter),
                litert={"runtime": f"LiteRT {runtime.LITERT_VERSION}", "ran": True,
                        "images": int(len(labels))},
                android=_android(pythons, path, images[:report_cfg.mediapipe_images],
                                 top1_classes[variant]) if pythons else None))
            logger.info("  %s: top-1 %.4f, %.0f KiB", variant, entries[-1]["top1"],
                        entries[-1]["size_bytes"] / 1024)
    report = {
        "model": model_name,
        "dataset": dataset.name,
        "num_test": int(len(labels)),
        "num_classes": int(dataset.num_classes),
        "class_names": [str(name) for name in dataset.class_names],
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "cpu": host.cpu_facts()},
        "mediapipe_check": mediapipe_check,
        "variants": entries,
        "qat": _qat_facts(run, qat_scores, top1_classes, labels, keras_qat=keras_qat),
        "diagnosis": _diagnosis(model, paths, calibration, report_cfg=report_cfg, name=model.name,
                                int8=next((e for e in entries if e["variant"] == "int8"), None),
                                images=images, **measure),
    }
    report["decision"] = decide.decide(report, budget_points=report_cfg.budget_points,
                                       class_budget_points=report_cfg.class_budget_points,
                                       confidence=report_cfg.confidence,
                                       target_names=report_cfg.targets)
    report_lib.write(report, run)
    return report


def _keras_qat(run, paths, images, *, allow_unsafe):
    """The QAT Keras model's scores, or None where the run has no int8_qat file.

    Measured on its own: int8_qat's change against keras_float mixes QAT's extra
    fine-tuning with quantization, and its agreement with this model is the
    conversion's fidelity alone.
    """
    if "int8_qat" not in paths:
        return None
    qat_model = load_qat_model(run, scope=quantize_scope, allow_unsafe=allow_unsafe)
    return qat_model.predict(array_batches(images.astype("float32"), batch_size=64), verbose=0)


def _qat_facts(run, qat_scores, top1_classes, labels, *, keras_qat):
    """report.json's `qat`: the two comparisons that judge QAT, image by image.

    The conversion (int8_qat against the QAT Keras model) and the gain over
    PTQ (int8_qat against int8). `keras_qat` is the QAT Keras model's entry,
    whose top-1 is reused.
    """
    if qat_scores is None or "int8_qat" not in top1_classes:
        return None
    qat_result = run.read_json(run.qat_result) if os.path.exists(run.qat_result) else {}
    int8_qat = top1_classes["int8_qat"]
    facts = {"epochs": qat_result.get("epochs"),
             "keras_top1": keras_qat["top1"],
             "int8_qat_agreement": float(np.mean(int8_qat == qat_scores.argmax(-1))),
             "against_keras_qat": _counts("keras_qat", qat_scores.argmax(-1), int8_qat, labels)}
    if "int8" in top1_classes:
        facts["against_int8"] = _counts("int8", top1_classes["int8"], int8_qat, labels)
    return facts


def _diagnosis(model, paths, calibration, *, report_cfg, name, int8, images, labels, reference,
               float_top1):
    """Per-layer int8 error against the exported float32 file, and the selective branch."""
    if int8 is None:
        return None
    if "float32" not in paths:
        return {"layers": None, "selective": None,
                "skipped": "float32 was not exported: the per-layer error is measured against "
                           "it (--export.variants with float32)"}
    float_data = _read(paths["float32"])
    layers = diagnose.layer_errors(model, float_data, _read(paths["int8"]), calibration,
                                   top_k=10)
    with tempfile.TemporaryDirectory() as scratch:
        selective = _selective(model, calibration, layers, out_dir=scratch, name=name,
                               images=images, labels=labels, reference=reference,
                               float_top1=float_top1, int8_top1=int8["top1"],
                               threshold=report_cfg.selective_threshold, float_data=float_data)
    return {"layers": layers, "selective": selective}
