"""The `report` stage of train.py: every exported file measured on the test split.

`report_run` evaluates each file with LiteRT (export/runtime.py) next to the
Keras float model, writes its Android bundle, and writes report.json first,
then report.md and report.png from it. Every model's top-1 class of each test
image is kept in memory, so that each comparison is paired image by image
(report/statistics.py); report.json holds the counts, not the images.
"""

import datetime
import logging
import os
import platform

import numpy as np

from export import android, edgetpu, gpu, mediapipe_client, quantizer, runtime, tflite
from export.run import load_manifest
from quantization.qat import quantize_scope
from report import diagnose, host, statistics
from report import render as report_lib
from rundir.models import load_float_model, load_qat_model

logger = logging.getLogger(__name__)


def _entry(variant, *, file, scores, labels, reference, float_top1, latency=None, check=None,
           xnnpack=None, gpu_delegate=None):
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
        "gpu_delegate": gpu_delegate,
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
    file's bytes), a litert-quantizer recipe that leaves the same Keras layers unquantized.
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
    recipe = {"keep_float": keep, **_entry(
        "int8_selective_recipe", file=recipe_path,
        scores=runtime.predict_tflite(recipe_path, images), labels=labels,
        reference=reference, float_top1=float_top1)}
    return {"applied": True, "int8_drop_points": round(drop, 4), "threshold_points": threshold,
            "denylist": denylist, **entry, "recipe": recipe}


def _gpu_check(count):
    """(The MediaPipe environment's python or None, report.json's `gpu_check`)."""
    python = mediapipe_client.environment() if count else None
    if python is not None:
        return python, {"checked": True, "images": count}
    reason = ("--report.gpu_images is 0" if not count else
              "MediaPipe's environment is not built; python -m export.mediapipe_client builds "
              "it (pip, about 100 MB), then python train.py --stages report --run-dir <run> "
              "checks again")
    return None, {"checked": False, "reason": reason}


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _float32_data(model, paths):
    """The float32 file the per-layer errors are measured against; made here if not exported."""
    return _read(paths["float32"]) if "float32" in paths else tflite.convert(model, "float32")


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


def report_run(run, dataset, *, model_name, export_cfg, report_cfg, calibration,
               allow_unsafe=False) -> dict:
    """Evaluates the Keras float model and every exported file; writes the report.

    Args:
        run: a `rundir.RunDir` with exported files.
        dataset: the run's `datasets.Dataset` (its test split is measured).
        model_name: str, the job's `model.name`, as the report names the net.
        export_cfg: the job's `export` section (`latency_runs`,
            `selective_threshold`).
        report_cfg: the job's `report` section (`budget_points`,
            `class_budget_points`, `confidence`): what the decision judges by.
        calibration: the run's calibration images (`export.run.calibration_set`),
            for the int8 diagnosis.
        allow_unsafe: bool, as `rundir.model_files.load_model`.

    Returns:
        The report dict (as written to report.json).

    Raises:
        FileNotFoundError: the run has no exported files yet.
    """
    paths = load_manifest(run)
    model = load_float_model(run, allow_unsafe=allow_unsafe)
    images, labels = dataset.test_arrays()
    labels = np.asarray(labels)
    reference = model.predict(images.astype("float32"), batch_size=64, verbose=0)
    float_top1 = runtime.classification_metrics(reference, labels)["top1"]
    entries = [_entry("keras_float", file=None, scores=reference, labels=labels,
                      reference=reference, float_top1=float_top1)]
    qat = None
    if "int8_qat" in paths:
        # The QAT Keras model (fake-quantized) on its own: int8_qat's Δ against
        # keras_float mixes QAT's extra fine-tuning with quantization, and its
        # agreement with this model is the conversion's fidelity alone.
        qat_model = load_qat_model(run, scope=quantize_scope, allow_unsafe=allow_unsafe)
        qat_scores = qat_model.predict(images.astype("float32"), batch_size=64,
                                                     verbose=0)
        entries.append(_entry("keras_qat", file=None, scores=qat_scores, labels=labels,
                              reference=reference, float_top1=float_top1))
        qat_result = run.read_json(run.qat_result) if os.path.exists(run.qat_result) else {}
        qat = {"epochs": qat_result.get("epochs"), "keras_top1": entries[-1]["top1"]}
    top1_classes = {}  # each file's top-1 class per test image, for the QAT comparisons
    _check_exports_fit(run, paths, image_shape=images.shape[1:], num_classes=reference.shape[-1])
    gpu_python, gpu_check = _gpu_check(report_cfg.gpu_images)
    gpu_images = images[:report_cfg.gpu_images]
    # All files timed in the same turns, so that their ratios hold under load.
    latencies = {threads: runtime.measure_latency(paths, num_threads=count,
                                                  runs=export_cfg.latency_runs)
                 for threads, count in (("1_thread", 1), ("all_threads", os.cpu_count()))}
    for variant, path in paths.items():
        latency = {threads: timed[variant] for threads, timed in latencies.items()}
        interpreter = runtime.load_interpreter(path)
        scores = runtime.predict_tflite(interpreter, images)
        top1_classes[variant] = scores.argmax(-1)
        entries.append(_entry(variant, file=path, scores=scores, labels=labels,
                              reference=reference, float_top1=float_top1, latency=latency,
                              check=edgetpu.check(path),
                              xnnpack=runtime.xnnpack_placement(interpreter),
                              gpu_delegate=gpu.check(gpu_python, path, gpu_images)
                              if gpu_python else None))
        if variant == "int8_qat":
            qat["int8_qat_agreement"] = runtime.classification_metrics(
                scores, labels, reference_predictions=qat_scores)["agreement"]
            # The two comparisons that judge QAT, image by image: the conversion
            # (against the QAT Keras model) and the gain over PTQ (against int8).
            qat["against_keras_qat"] = _counts("keras_qat", qat_scores.argmax(-1),
                                               top1_classes[variant], labels)
        bundle_entry = entries[-1]
        android.write_bundle(path, out_dir=run.android_bundle(variant),
                             labels=list(dataset.class_names), report_entry=bundle_entry)
        logger.info("  %s: top-1 %.4f, %.0f KiB, %.2f ms", variant, bundle_entry["top1"],
                    bundle_entry["size_bytes"] / 1024, latency["all_threads"]["median_ms"])

    if qat is not None and "int8" in top1_classes:
        qat["against_int8"] = _counts("int8", top1_classes["int8"], top1_classes["int8_qat"],
                                      labels)
    diagnosis = None
    int8 = next((e for e in entries if e["variant"] == "int8"), None)
    if int8 is not None:
        float_data = _float32_data(model, paths)
        layers = diagnose.layer_errors(model, float_data, _read(paths["int8"]), calibration,
                                       top_k=10)
        diagnosis = {"layers": layers, "selective": _selective(
            model, calibration, layers, out_dir=run.export_dir, name=model.name, images=images,
            labels=labels, reference=reference, float_top1=float_top1,
            int8_top1=int8["top1"], threshold=export_cfg.selective_threshold,
            float_data=float_data)}

    report = {
        "model": model_name,
        "dataset": dataset.name,
        "num_test": int(len(labels)),
        "num_classes": int(dataset.num_classes),
        "class_names": [str(name) for name in dataset.class_names],
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "cpu": host.cpu_facts()},
        "gpu_check": gpu_check,
        "variants": entries,
        "qat": qat,
        "diagnosis": diagnosis,
    }
    report_lib.write(report, run, budget_points=report_cfg.budget_points,
                     class_budget_points=report_cfg.class_budget_points,
                     confidence=report_cfg.confidence)
    return report
