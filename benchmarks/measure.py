"""The measurements behind `python -m benchmarks`: training, input pipeline, latency, size, memory.

Each figure is a median over repeated timed runs after warm-up, with min and
max beside it; what a ratio compares is timed in turns in the same process.
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from export import tflite
from report import evaluate
from resnet_keras import build_model, count_macs
from resnet_keras.backend import keras, tf
from resnet_keras.models import fold_channel_reversal
from training import config as config_lib
from training.loop import build_training_model, compile_model


def spread(values, scale=1.0) -> dict:
    """median/min/max of `values` times `scale`."""
    values = np.asarray(values, dtype=float) * scale
    return {"median": float(np.median(values)), "min": float(np.min(values)),
            "max": float(np.max(values))}


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every 5 ms).

    Reads /proc/self/status so that each phase has its own peak, which
    `ru_maxrss` (a whole-process maximum) cannot give.
    """

    def __enter__(self):
        self.peak_mb = self.start_mb = self._rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak_mb = max(self.peak_mb, self._rss_mb())

    @staticmethod
    def _rss_mb():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._rss_mb())


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def synthetic_pipeline(image_size, batch_size, classes, *, count=64, seed=0):
    """An in-memory uint8 dataset through tf.data, cast to float32 pixels like datasets."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, image_size, image_size, 3), dtype=np.uint8)
    labels = rng.integers(0, classes, count).astype(np.int32)
    return (tf.data.Dataset.from_tensor_slices((images, labels)).repeat()
            .batch(batch_size, drop_remainder=True)
            .map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def training_throughput(models, *, image_size, batch_size, classes, steps, repeats):
    """Images/s of `fit` for each model, timed in turns on the same synthetic data.

    Each model first trains one untimed epoch (tracing, allocation); then in
    each of `repeats` rounds every model trains one timed epoch of `steps`
    batches, the order rotating by one model per round. Models compared this
    way run under the same machine load, which on a shared machine drifts by
    more than the differences measured; `paired_ratio` compares them round
    by round.

    Args:
        models: dict {name: compiled tf_keras model}.

    Returns:
        ({name: spread of images/s plus `rounds`, the rate of each round},
        {name: peak RSS in MB during its epochs}); the RSS is the whole
        process's, with every model of `models` resident.
    """
    data = synthetic_pipeline(image_size, batch_size, classes)
    names = list(models)
    rates = {name: [] for name in names}
    peak_mb = dict.fromkeys(names, 0.0)
    for turn in range(repeats + 1):
        for name in names[turn % len(names):] + names[:turn % len(names)]:
            timer = EpochTimer()
            with PeakRSS() as memory:
                models[name].fit(data, epochs=1, steps_per_epoch=steps, callbacks=[timer],
                                 verbose=0)
            peak_mb[name] = max(peak_mb[name], memory.peak_mb)
            if turn:
                rates[name].append(steps * batch_size / timer.seconds[0])
    return {name: dict(spread(r), rounds=r) for name, r in rates.items()}, peak_mb


def paired_ratio(ours, reference):
    """Median over rounds of ours / reference, each ratio taken within one round."""
    return float(np.median(np.divide(ours["rounds"], reference["rounds"])))


def our_training_model(name, *, image_size, classes, jit_compile=False, policy="float32"):
    """The model and compile step train.py uses, for `name` (weight decay, metrics included).

    `policy` is the Keras dtype policy it is built under (`mixed_bfloat16`:
    what `--train.mixed_precision auto` picks on a CPU with bfloat16).
    """
    config = config_lib.resolve(overrides={"model.name": name})
    model = build_training_model(config, num_classes=classes,
                                 image_shape=(image_size, image_size, 3), policy=policy)
    compile_model(model, optimizer=keras.optimizers.SGD(0.1, momentum=0.9), num_classes=classes,
                  label_smoothing=0.0, jit_compile=jit_compile)
    return model


def bare_training_model(name, *, image_size, classes):
    """Our `name` compiled as the references are: no weight decay, no top-5 metric.

    Beside `our_training_model` it splits a gap to the reference into what
    train.py adds and what the network itself costs.
    """
    return _compile_plain(build_model(name, input_shape=(image_size, image_size, 3),
                                      classes=classes))


def _compile_plain(model):
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def keras_applications_resnet50(*, image_size, classes):
    return _compile_plain(keras.applications.ResNet50(
        weights=None, input_shape=(image_size, image_size, 3), classes=classes))


def hand_built_resnet20(*, image_size, classes):
    """ResNet-20 written the way a Keras user would by hand (option B shortcuts, 'same' padding)."""
    layers = keras.layers

    def conv_bn(x, filters, stride=1, relu=True):
        x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU()(x) if relu else x

    inputs = layers.Input((image_size, image_size, 3))
    x = conv_bn(layers.Rescaling(1 / 127.5, offset=-1)(inputs), 16)
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(3):
            stride = 2 if stage > 0 and block == 0 else 1
            y = conv_bn(conv_bn(x, filters, stride), filters, relu=False)
            if stride > 1:
                x = layers.BatchNormalization()(
                    layers.Conv2D(filters, 1, strides=stride, use_bias=False)(x))
            x = layers.ReLU()(layers.Add()([x, y]))
    x = layers.Dense(classes, activation="softmax")(layers.GlobalAveragePooling2D()(x))
    return _compile_plain(keras.Model(inputs, x))


def write_jpeg_folder(root, *, classes, per_class, size, seed=0):
    """A folder dataset of random JPEGs at an ImageNet-like size."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for c in range(classes):
            folder = os.path.join(root, split, f"class{c}")
            os.makedirs(folder, exist_ok=True)
            for i in range(per_class if split == "train" else 1):
                pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(pixels).save(os.path.join(folder, f"{i}.jpg"), quality=90)


def pipeline_throughput(*, image_size, batch_size, classes, per_class, jpeg_size, repeats):
    """Images/s the image-folder loader delivers: decode, random-resized crop, flip, batch."""
    from datasets import load_dataset
    with tempfile.TemporaryDirectory() as root:
        write_jpeg_folder(root, classes=classes, per_class=per_class, size=jpeg_size)
        dataset = load_dataset("folder", data_dir=root, image_size=image_size)
        stream = iter(dataset.train(batch_size, repeat=True))
        steps = max(2, dataset.num_train // batch_size)
        next(stream)  # warm-up: builds the pipeline
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(steps):
                next(stream)
            rates.append(steps * batch_size / (time.perf_counter() - start))
    return spread(rates)


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

    Every file is timed in the same turns (`evaluate.measure_latency`), so the
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
        timed = evaluate.measure_latency(files, num_threads=threads, runs=runs)
        for file_key, stats in timed.items():
            entries[file_key][key] = {k.replace("_ms", ""): v for k, v in stats.items()}
    base = result["variants"]["float32"]
    for file_key, entry in entries.items():
        entry["xnnpack"] = evaluate.xnnpack_placement(files[file_key])
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

    A cross-check of `evaluate.measure_latency` by a second runtime path.

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
