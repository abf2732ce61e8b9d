"""The measurements behind `python -m benchmarks`: training, input pipeline, latency, size, memory.

Each figure is a median over repeated timed runs after warm-up, with min and
max beside it; what a ratio compares is timed in turns in the same process.
"""

import collections
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from datasets import writers
from datasets.input_pipeline import without_autotune
from export import runtime, tflite
from job import config as config_lib
from resnet_keras import build_model, count_macs
from resnet_keras.backend import ONEDNN, cpu_flags, keras, tf
from resnet_keras.models import fold_channel_reversal
from training.loop import build_training_model, compile_model

# The CPU features that decide our kernels: vector width, int8 dot products, bfloat16.
CPU_FEATURES = {"avx2": "AVX2", "avx512f": "AVX512F", "avx512_vnni": "AVX512-VNNI",
                "avx_vnni": "AVX-VNNI", "avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX-BF16",
                "amx_int8": "AMX-INT8"}


def machine_info():
    """CPU model and features, CPU count, GPUs, platform, TensorFlow, oneDNN; `tag` names files."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpus = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
            for g in tf.config.list_physical_devices("GPU")]
    tag = f"{platform.machine()}-{os.cpu_count()}cpu" + (f"-{len(gpus)}gpu" if gpus else "")
    flags = cpu_flags() or set()
    return {"tag": tag, "cpu": cpu, "cpu_count": os.cpu_count(),
            "cpu_features": [name for flag, name in CPU_FEATURES.items() if flag in flags],
            "gpus": gpus, "platform": platform.platform(), "tensorflow": tf.__version__,
            "onednn": ONEDNN.to_dict()}


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
    """Each epoch's seconds, and when it ended (`time.perf_counter`)."""

    def __init__(self):
        super().__init__()
        self.seconds = []
        self.ends = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(time.perf_counter())
        self.seconds.append(self.ends[-1] - self._start)


def synthetic_pipeline(image_size, batch_size, classes, *, seed=0):
    """One batch of random float32 pixels and int32 labels, served again and again.

    Nothing is copied or computed per step on the host, so what is timed is
    the train step (on a GPU, plus the batch's copy to the device).
    """
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batch_size, image_size, image_size, 3)).astype(np.float32)
    labels = rng.integers(0, classes, batch_size).astype(np.int32)
    return without_autotune(
        tf.data.Dataset.from_tensors((images, labels)).repeat().prefetch(tf.data.AUTOTUNE))


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


def our_training_model(name, *, image_size, classes, jit_compile=False, policy="float32",
                       variant=None):
    """The model and compile step train.py uses, for `name` (weight decay, metrics included).

    `policy` is the Keras dtype policy it is built under (`mixed_bfloat16`:
    what `--train.mixed_precision auto` picks on a CPU with bfloat16);
    `variant` "v1" or "v1.5" for the ImageNet nets (None: the default,
    the only one for the CIFAR nets).
    """
    overrides = {"model.name": name}
    if variant:
        overrides["model.variant"] = variant
    config = config_lib.resolve(overrides=overrides)
    model = build_training_model(config.model, weight_decay=config.train.weight_decay,
                                 num_classes=classes,
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


def hand_built_resnet20(*, image_size, classes, normalization=False, explicit_pad=False,
                        option_a=False):
    """ResNet-20 written the way a Keras user would by hand (option B shortcuts, 'same' padding).

    Each flag adds one thing our resnet20 does differently, to time what it
    costs (`RESNET20_DIFFERENCES`).

    Args:
        normalization: a `Normalization` layer (mean and variance 127.5^2)
            instead of `Rescaling(1 / 127.5, offset=-1)`; the same function.
        explicit_pad: `ZeroPadding2D(1)` and a 'valid' conv where the stride is
            2 (1 pixel each side, as torchvision), instead of 'same' (0 before,
            1 after, TensorFlow's rule for even sizes).
        option_a: the paper's parameter-free shortcut, a frozen 1x1 stride-2
            conv with the [I 0] kernel (`resnet_keras.blocks.subsample_kernel`),
            instead of a 1x1 projection conv + BN.
    """
    from resnet_keras.blocks import subsample_kernel
    layers = keras.layers

    def conv_bn(x, filters, stride=1, relu=True):
        if stride > 1 and explicit_pad:
            x = layers.ZeroPadding2D(1)(x)
        x = layers.Conv2D(filters, 3, strides=stride, use_bias=False,
                          padding="valid" if stride > 1 and explicit_pad else "same")(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU()(x) if relu else x

    def projection(x, filters):
        if option_a:
            return layers.Conv2D(filters, 1, strides=2, use_bias=False, trainable=False,
                                 kernel_initializer=keras.initializers.Constant(
                                     subsample_kernel(x.shape[-1], filters).tolist()))(x)
        return layers.BatchNormalization()(
            layers.Conv2D(filters, 1, strides=2, use_bias=False)(x))

    inputs = layers.Input((image_size, image_size, 3))
    x = (layers.Normalization(mean=127.5, variance=127.5 ** 2) if normalization
         else layers.Rescaling(1 / 127.5, offset=-1))(inputs)
    x = conv_bn(x, 16)
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(3):
            stride = 2 if stage > 0 and block == 0 else 1
            y = conv_bn(conv_bn(x, filters, stride), filters, relu=False)
            if stride > 1:
                x = projection(x, filters)
            x = layers.ReLU()(layers.Add()([x, y]))
    x = layers.Dense(classes, activation="softmax")(layers.GlobalAveragePooling2D()(x))
    return _compile_plain(keras.Model(inputs, x))


# Our resnet20 against the hand-built one, one difference at a time: {label: flags}.
RESNET20_DIFFERENCES = {
    "hand-built": {},
    "+ Normalization layer": {"normalization": True},
    "+ explicit padding": {"explicit_pad": True},
    "+ option-A shortcut": {"option_a": True},
    "+ all three": {"normalization": True, "explicit_pad": True, "option_a": True},
}


def train_step_ops(model, *, image_size, batch_size, classes):
    """The TensorFlow ops of `model`'s compiled train step, `{op type: count}`.

    Counted in its traced graph and the functions it calls (the step's
    forward, backward and optimizer update): what the step executes, which
    two models may be compared on without the noise of a timing.
    """
    data = synthetic_pipeline(image_size, batch_size, classes)
    if model.train_function is None:
        model.fit(data, epochs=1, steps_per_epoch=1, verbose=0)
    graph = model.train_function.get_concrete_function(iter(data)).graph
    ops = collections.Counter(op.type for op in graph.get_operations())
    for function in graph.as_graph_def().library.function:
        ops.update(node.op for node in function.node_def)
    return dict(ops)


def resnet20_differences(*, batch_size, steps, repeats):
    """Train-step images/s of the hand-built ResNet-20 with each of our differences, and ours.

    All timed in turns (`training_throughput`); "ours bare" is our resnet20
    compiled as the hand-built one is.

    Returns:
        {label: spread of images/s plus `rounds`, `ratio` (the median over
        rounds of its rate / the hand-built one's) and `ops` (the number of
        ops its train step executes, `train_step_ops`)}.
    """
    models = {label: hand_built_resnet20(image_size=32, classes=10, **flags)
              for label, flags in RESNET20_DIFFERENCES.items()}
    models["ours bare"] = bare_training_model("resnet20", image_size=32, classes=10)
    rates, _ = training_throughput(models, image_size=32, batch_size=batch_size, classes=10,
                                   steps=steps, repeats=repeats)
    return {label: dict(r, ratio=paired_ratio(r, rates["hand-built"]), ops=sum(
        train_step_ops(models[label], image_size=32, batch_size=batch_size,
                       classes=10).values())) for label, r in rates.items()}


def write_jpeg_folder(root, *, classes, per_class, size, seed=0):
    """A folder dataset of random JPEGs at an ImageNet-like size."""
    rng = np.random.default_rng(seed)
    class_names = [f"class{c}" for c in range(classes)]
    for split, n in (("train", per_class * classes), ("val", classes)):
        writers.write_image_folder(root, split,
                                   rng.integers(0, 256, (n, size[1], size[0], 3), np.uint8),
                                   np.arange(n) % classes, class_names=class_names,
                                   suffix=".jpg", quality=90)


def pipeline_throughput(*, image_size, batch_size, classes, per_class, jpeg_size, repeats):
    """Images/s the image-folder loader delivers: decode, random-resized crop, flip, batch."""
    from datasets import load_dataset
    with tempfile.TemporaryDirectory() as root:
        write_jpeg_folder(root, classes=classes, per_class=per_class, size=jpeg_size)
        dataset = load_dataset("folder", data_dir=root, image_size=image_size)
        return loader_throughput(dataset, batch_size=batch_size, passes=repeats)["later_passes"]


# The sources `source_throughput` measures, in words: the formats users have.
SOURCES = {"folder": "folder of 28x28 gray PNG files (resized to 32x32)",
           "cifar10": "CIFAR-10 python batches", "fashion_mnist": "Fashion-MNIST gzipped IDX"}


def write_source(source, root, *, num_train, num_test, seed=0):
    """Random images in the on-disk format of `source`; returns `load_dataset`'s arguments."""
    rng = np.random.default_rng(seed)
    labels = {"train": np.arange(num_train) % 10, "test": np.arange(num_test) % 10}
    class_names = [f"class{c}" for c in range(10)]
    if source == "folder":
        for split, folder_split in (("train", "train"), ("test", "val")):
            writers.write_image_folder(
                root, folder_split, rng.integers(0, 256, (len(labels[split]), 28, 28), np.uint8),
                labels[split], class_names=class_names)
        return {"name": "folder", "data_dir": root, "image_size": 32}
    if source == "cifar10":
        writers.write_files(root, writers.cifar_files("cifar10", class_names=class_names, **{
            split: (rng.integers(0, 256, (len(y), 32, 32, 3), np.uint8), y)
            for split, y in labels.items()}))
        return {"name": "cifar10", "data_dir": root}
    for split, y in labels.items():
        writers.write_idx(root, split, rng.integers(0, 256, (len(y), 28, 28), np.uint8), y,
                          gz=True)
    return {"name": "fashion_mnist", "data_dir": root}


def loader_throughput(dataset, *, batch_size, passes):
    """Images/s of `dataset`'s training pipeline alone, read as train.py reads it.

    One endless, shuffled, augmented stream (`Dataset.train(repeat=True)`),
    timed over its first pass, where a folder's files are decoded (and kept in
    memory when they fit), and over `passes` later passes.

    Returns:
        dict: `first_pass` images/s, `later_passes` the spread over passes.
    """
    steps = dataset.num_train // batch_size
    stream = iter(dataset.train(batch_size, repeat=True, drop_remainder=True))

    def one_pass():
        start = time.perf_counter()
        for _ in range(steps):
            next(stream)
        return steps * batch_size / (time.perf_counter() - start)

    first = one_pass()
    return {"first_pass": first, "later_passes": spread([one_pass() for _ in range(passes)])}


def fed_training(model, dataset, *, batch_size, epochs):
    """Images/s of `fit` fed by `dataset`'s loader, as train.py feeds it, epoch by epoch.

    In turns with each epoch, the same model trains as many steps on one
    in-memory batch (`synthetic_pipeline`): what it would reach if data cost
    nothing. The model first trains one untimed step (tracing), so that the
    loader's first epoch is its first pass and the training.

    Returns:
        dict: `loader` and `in_memory`, images/s per epoch.
    """
    steps = dataset.num_train // batch_size
    streams = {"loader": dataset.train(batch_size, repeat=True, drop_remainder=True),
               "in_memory": synthetic_pipeline(32, batch_size, dataset.num_classes)}
    model.fit(streams["in_memory"], epochs=1, steps_per_epoch=1, verbose=0)
    rates = {key: [] for key in streams}
    for _ in range(epochs):
        for key, stream in streams.items():
            timer = EpochTimer()
            model.fit(stream, epochs=1, steps_per_epoch=steps, callbacks=[timer], verbose=0)
            rates[key].append(steps * batch_size / timer.seconds[0])
    return rates


def source_throughput(source, *, num_train, batch_size, passes, epochs, model):
    """The loader of `source` alone and feeding `model`, on random images in its format.

    Args:
        source: str, a key of `SOURCES`.
        num_train: int, training images written.
        model: a compiled model for 32x32 images and 10 classes.

    Returns:
        dict: `loader` (`loader_throughput`), `fed_training`
        (`fed_training`), `write_seconds` (making the files).
    """
    from datasets import load_dataset
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        arguments = write_source(source, root, num_train=num_train,
                                 num_test=max(10, num_train // 60))
        written = time.perf_counter() - start
        name = arguments.pop("name")
        loader = loader_throughput(load_dataset(name, **arguments), batch_size=batch_size,
                                   passes=passes)
        fed = fed_training(model, load_dataset(name, **arguments), batch_size=batch_size,
                           epochs=epochs)
    return {"source": source, "num_train": num_train, "loader": loader, "fed_training": fed,
            "write_seconds": round(written, 1)}


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
