"""`python -m benchmarks`' inference rows: latency, file size, op placement and conversion cost.

For each model, the Keras float model and the TFLite float32/fp16/dynamic/int8
files through LiteRT (XNNPACK) at batch 1, one thread and all threads, timed in
turns, beside a reference model's files and our input normalization alone; the
float32/int8 pair again through LiteRT's own benchmark tool; against the
machine's float32 matmul peak.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks.models import hand_built_resnet20
from benchmarks.timing import PeakRSS, spread
from export import runtime, tflite
from resnet_keras import build_model, count_macs
from resnet_keras.backend import keras, tf
from resnet_keras.models import fold_channel_reversal


def keras_latency(model, *, image_size, runs, warmup=5):
    """Batch-1 latency of the Keras float model as a compiled tf.function, in ms."""
    forward = tf.function(lambda x: model(x, training=False))
    x = tf.random.uniform((1, image_size, image_size, 3), 0, 255)
    for _ in range(warmup):
        forward(x).numpy()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        forward(x).numpy()
        times.append(time.perf_counter() - start)
    return spread(times, 1e3)


def matmul_macs_per_second(*, size, repeats):
    """The machine's float32 matmul throughput in multiply-adds per second."""
    a = tf.random.uniform((size, size))
    b = tf.random.uniform((size, size))
    matmul = tf.function(lambda: tf.linalg.matmul(a, b))
    matmul().numpy()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul().numpy()
        rates.append(size ** 3 / (time.perf_counter() - start))
    return spread(rates)


def inference_and_export(name, *, image_size, calibration, runs, out_dir, reference=None):
    """Keras and TFLite latency, file size, op placement, conversion time and RSS for one model.

    Every file is timed in the same turns (`runtime.measure_latency`), so the
    ratios to float32 compare files run under the same machine load. Beside
    the four variants, the int8 file of the model's own input normalization
    alone is timed (what an int8 file spends before conv1), and, when given,
    a reference model's float32 and int8 files.

    Args:
        reference: optional, from `inference_reference`.

    Returns:
        dict with `macs`, `keras_ms`, `variants` (per variant `size_bytes`,
        `convert_seconds`, `convert_peak_rss_mb`, latencies, ratios to
        float32, `xnnpack`) and `others` (the same but conversion figures,
        for the preprocessing-only and reference files).
    """
    model = build_model(name, input_shape=(image_size, image_size, 3), classes=10)
    result = {"model": name, "image_size": image_size, "macs": count_macs(model),
              "keras_ms": keras_latency(model, image_size=image_size, runs=runs),
              "variants": {}, "others": {}}
    files = {}

    def write(key, data):
        files[key] = os.path.join(out_dir, f"{name}_{image_size}_{key.replace(' ', '_')}.tflite")
        with open(files[key], "wb") as f:
            f.write(data)
        return {"size_bytes": len(data)}

    for variant in ("float32", "fp16", "dynamic", "int8"):
        with PeakRSS() as memory:
            start = time.perf_counter()
            data = tflite.convert(model, variant, calibration_images=calibration)
            seconds = time.perf_counter() - start
        result["variants"][variant] = dict(write(variant, data), convert_seconds=round(seconds, 2),
                                           convert_peak_rss_mb=round(memory.peak_mb, 1))
    # What the int8 file runs before conv1 (a caffe BGR reordering is folded into conv1).
    deployed = fold_channel_reversal(model)
    preprocessing = [layer for layer in deployed.layers
                     if layer.name.startswith("preprocess_")][-1]
    result["others"]["int8 preprocessing only"] = write("int8 preprocessing only", tflite.convert(
        keras.Model(deployed.input, preprocessing.output), "int8", calibration_images=calibration))
    if reference is not None:
        result["reference"] = {"label": reference["label"], "input": reference["input"]}
        prepare = reference["prepare"] or (lambda images: images)
        for variant in ("float32", "int8"):
            key = f"{reference['label']} {variant}"
            result["others"][key] = write(key, tflite.convert(
                reference["model"], variant, calibration_images=prepare(calibration.copy())))

    entries = {**result["variants"], **result["others"]}
    for key, threads in (("latency_1_thread_ms", 1), ("latency_all_threads_ms", os.cpu_count())):
        timed = runtime.measure_latency(files, num_threads=threads, runs=runs)
        for file_key, stats in timed.items():
            entries[file_key][key] = {k.replace("_ms", ""): v for k, v in stats.items()}
    base = result["variants"]["float32"]
    for file_key, entry in entries.items():
        entry["xnnpack"] = runtime.xnnpack_placement(files[file_key])
        entry["size_vs_float32"] = entry["size_bytes"] / base["size_bytes"]
        for key in ("latency_1_thread_ms", "latency_all_threads_ms"):
            entry[key.replace("_ms", "_vs_float32")] = \
                entry[key]["median"] / base[key]["median"]
    result["litert_tool"] = {
        variant: litert_tool_latency(files[variant], num_threads=os.cpu_count(), runs=runs)
        for variant in ("float32", "int8")}
    return result


def inference_reference(name, *, image_size):
    """The model our `name` is timed against as a `.tflite` file, or None.

    A dict: `label`, `model`, `input` (what it takes) and `prepare` (None, or
    the function mapping raw pixels to its input).
    """
    if name == "resnet50":
        return {"label": "keras.applications", "input": "caffe-preprocessed pixels",
                "model": keras.applications.ResNet50(
                    weights=None, input_shape=(image_size, image_size, 3), classes=10),
                "prepare": keras.applications.resnet50.preprocess_input}
    if name == "resnet20":
        return {"label": "hand-built", "input": "raw pixels", "prepare": None,
                "model": hand_built_resnet20(image_size=image_size, classes=10)}
    return None


def litert_tool_latency(path, *, num_threads, runs, warmup=5):
    """Latency from LiteRT's own benchmark tool (its CompiledModel runtime), in a child process.

    A cross-check of `runtime.measure_latency` by a second runtime path.

    Returns:
        dict(median, min, max) in ms and `fully_accelerated` (whether the CPU
        accelerator took every op).
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        command = [sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model",
                   "--model", path, "--num_threads", str(num_threads), "--num_runs", str(runs),
                   "--warmup_runs", str(warmup), "--result_json", out]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 or not os.path.exists(out):
            raise RuntimeError(f"LiteRT's benchmark tool failed on {path} (exit "
                               f"{done.returncode}): {done.stderr.strip()[-1000:]}")
        with open(out) as f:
            tool = json.load(f)
    latency = tool["latency"]
    return {"median": latency["median_ms"], "min": latency["min_ms"], "max": latency["max_ms"],
            "fully_accelerated": tool["fully_accelerated"]}


def inference_rows(settings, *, image_size) -> dict:
    """The matmul peak and `inference_and_export` of each model `settings` names.

    Args:
        settings: the mode's settings: `inference` (model names), `calibration`
            (images), `latency_runs`, `matmul` (the matmul's side), `repeats`.
        image_size: resnet50's input side (the CIFAR nets take 32).

    Returns:
        dict: `matmul_macs_per_second` (spread) and `inference`, one entry a
        model, each variant with its `macs_per_second` (all threads) and
        `fraction_of_matmul` (of the matmul's median).
    """
    peak = matmul_macs_per_second(size=settings["matmul"], repeats=settings["repeats"])
    entries = []
    with tempfile.TemporaryDirectory() as out_dir:
        for name in settings["inference"]:
            size = image_size if name == "resnet50" else 32
            calibration = np.random.default_rng(0).uniform(
                0, 255, (settings["calibration"], size, size, 3)).astype("float32")
            entry = inference_and_export(
                name, image_size=size, calibration=calibration, runs=settings["latency_runs"],
                out_dir=out_dir, reference=inference_reference(name, image_size=size))
            for variant in entry["variants"].values():
                rate = entry["macs"] / (variant["latency_all_threads_ms"]["median"] / 1e3)
                variant["macs_per_second"] = rate
                variant["fraction_of_matmul"] = rate / peak["median"]
            entries.append(entry)
            print(f"  {name}: done", flush=True)
    return {"matmul_macs_per_second": peak, "inference": entries}
