"""`python -m benchmarks`' data sources: each format's loader alone, and feeding resnet20's step.

Random images written in the on-disk format users have (a folder of PNGs,
CIFAR-10 python batches, gzipped IDX), read back through `load_dataset`,
against resnet20's train step from the training rows.
"""

import gc
import tempfile
import time

import numpy as np

from benchmarks.models import our_training_model
from benchmarks.pipeline import loader_throughput
from benchmarks.timing import EpochTimer, synthetic_pipeline
from datasets import writers

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


def keeps_ahead(loader, train_step) -> dict:
    """Whether a loader (`loader_throughput`) outpaces `train_step` images/s: first pass, later."""
    return {"first_pass": loader["first_pass"] > train_step,
            "later_passes": loader["later_passes"]["median"] > train_step}


def data_sources(settings, resnet20):
    """Each source's loader alone and feeding resnet20, against resnet20's train step.

    resnet20 trains in the precision `--train.mixed_precision auto` picks
    here (float32 where that is mixed_float16: the training row has no such
    column); the train step is the training row's rate in that precision, on
    in-memory data.

    Args:
        settings: the mode's `sources` settings: `num_train` per source,
            `passes`, `epochs`.
        resnet20: resnet20's training row (`benchmarks.training_speed.training_row`).

    Returns:
        dict: `policy`, `batch_size`, `train_step` (images/s) and `sources`,
        one `source_throughput` each with its `keeps_ahead`.
    """
    from training.distribute import choose_precision
    policy = choose_precision("auto").policy
    policy = policy if policy == "mixed_bfloat16" else "float32"
    step = resnet20["ours_bf16" if policy == "mixed_bfloat16" else "ours"]["median"]
    sources = []
    for source, num_train in settings["num_train"].items():
        print(f"  {source}: {num_train} images ...", flush=True)
        model = our_training_model("resnet20", image_size=32, classes=10, policy=policy)
        entry = source_throughput(source, num_train=num_train,
                                  batch_size=resnet20["batch_size"], passes=settings["passes"],
                                  epochs=settings["epochs"], model=model)
        entry["keeps_ahead"] = keeps_ahead(entry["loader"], step)
        sources.append(entry)
        gc.collect()
    return {"policy": policy, "batch_size": resnet20["batch_size"], "train_step": step,
            "sources": sources}
