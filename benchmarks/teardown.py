"""`python -m benchmarks --teardown`: what the end of a pass over the data costs (issue 37).

Every tf.data iterator ran an autotuning thread whose sleep (10 ms, doubling)
could outlast the iterator's teardown, so a pass could end seconds after its
last batch; `datasets.input_pipeline.without_autotune` explains why and removes the
thread. Here our pipelines as they are ("autotune off") run in turns with the
same pipelines with autotuning turned back on ("autotune on", as they were):

- stall: a small `fit` of resnet20 on digits over a few epochs, fed as
  train.py feeds it, run again and again; from the last epoch's end to `fit`
  returning, and the epochs' times;
- loaders: images/s of each source's training stream (a folder of JPEGs, one
  of PNGs, CIFAR batches, IDX files, a TensorFlow Datasets dataset of JPEGs),
  first pass and later passes, and the time tfds takes to read its splits;
- train stage: `python train.py --stages train` in a temporary run
  directory, the stage's time against its epochs', from this checkout and,
  given a baseline checkout (`--baseline DIR`, e.g. a `git archive` of an
  earlier commit), from that one, in turns.

The stall strikes some passes only, so each figure is a distribution over runs.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SETTINGS = {
    "teardown": {"stall": {"runs": 8, "epochs": 3, "steps": 8, "batch": 64},
                 "loaders": {"num_train": 10000, "jpegs": 1000, "jpeg_size": (500, 375),
                             "image_size": 224, "batch": 128, "jpeg_batch": 32, "passes": 2,
                             "blocks": 4},
                 "train_stage": {"runs": 5, "epochs": 8}},
    "teardown-quick": {"stall": {"runs": 2, "epochs": 2, "steps": 2, "batch": 16},
                       "loaders": {"num_train": 64, "jpegs": 16, "jpeg_size": (64, 48),
                                   "image_size": 32, "batch": 8, "jpeg_batch": 4,
                                   "passes": 1, "blocks": 2},
                       "train_stage": {"runs": 1, "epochs": 1}},
}
# The pipelines compared, in the order of every table.
AUTOTUNE = ("off", "on")


def run(mode, *, baseline=None):
    """Measures `SETTINGS[mode]`; returns the JSON-ready result.

    Args:
        mode: `teardown` or `teardown-quick`.
        baseline: a checkout of the project whose train stage runs in turns
            with this one's, or None for this one's alone.

    Raises:
        RuntimeError: a train.py process failed; its log's tail is in the message.
    """
    from benchmarks.machine import result_head

    s = SETTINGS[mode]
    result = result_head(mode, s)
    print("stall at the end of fit ...", flush=True)
    result["stall"] = stall(**s["stall"])
    print("loaders ...", flush=True)
    result["loaders"] = loaders(**s["loaders"])
    print("train stage ...", flush=True)
    trees = {"this checkout": ROOT, **({"baseline": os.path.abspath(baseline)} if baseline
                                       else {})}
    result["train_stage"] = train_stage(trees, **s["train_stage"])
    return result


def autotuned(batches, setting):
    """`batches` as they are (`off`) or with tf.data's autotuning turned back on (`on`)."""
    from resnet_keras.backend import tf

    if setting == "off":
        return batches
    options = tf.data.Options()
    options.autotune.enabled = True
    return batches.with_options(options)


def stall(*, runs, epochs, steps, batch):
    """From the last epoch's end to `fit` returning, `runs` times for each setting, in turns.

    Each run is one `fit` of the same resnet20 on digits (train.py's model and
    compile step) with train.py's training and held-out pipelines
    (`training.loop.fit_inputs`), `epochs` epochs of `steps` steps.

    Returns:
        dict per setting: `stall_seconds` and `epoch_seconds` (lists, one
        item a run), `stall` (their spread), `fit_seconds`.
    """
    from benchmarks.models import our_training_model
    from benchmarks.timing import EpochTimer, spread
    from datasets import load_dataset
    from training.loop import fit_inputs

    digits = load_dataset("digits")
    model = our_training_model("resnet20", image_size=32, classes=10)
    train, held_out = fit_inputs(digits, batch_size=batch, label_smoothing=0.0, seed=0,
                                 augment=True)
    model.fit(train, epochs=1, steps_per_epoch=1, verbose=0)  # tracing, outside the turns
    out = {setting: {"stall_seconds": [], "epoch_seconds": [], "fit_seconds": []}
           for setting in AUTOTUNE}
    for turn in range(runs):
        for setting in AUTOTUNE[turn % 2:] + AUTOTUNE[:turn % 2]:
            timer = EpochTimer()
            start = time.perf_counter()
            model.fit(autotuned(train, setting), epochs=epochs, steps_per_epoch=steps,
                      validation_data=autotuned(held_out, setting), callbacks=[timer],
                      verbose=0)
            done = time.perf_counter()
            entry = out[setting]
            entry["stall_seconds"].append(done - timer.ends[-1])
            entry["epoch_seconds"].append(timer.seconds)
            entry["fit_seconds"].append(done - start)
    for entry in out.values():
        entry["stall"] = spread(entry["stall_seconds"])
    return out


def loaders(*, num_train, jpegs, jpeg_size, image_size, batch, jpeg_batch, passes, blocks):
    """Each source's training stream with autotuning off and on, pass by pass in turns.

    Returns:
        list of dicts: `source`, `images`, and per setting `first_pass`
        (images/s) and `later_passes` (spread); for tfds also `read_seconds`
        per setting, its splits read once at load.
    """
    from benchmarks.pipeline import write_jpeg_folder
    from benchmarks.sources import SOURCES, write_source
    from datasets import load_dataset

    rows = []
    with tempfile.TemporaryDirectory() as root:
        jpeg_root = os.path.join(root, "jpegs")
        write_jpeg_folder(jpeg_root, classes=4, per_class=jpegs // 4, size=jpeg_size)
        print("  folder of JPEGs", flush=True)
        rows.append({"source": f"folder of {jpeg_size[0]}x{jpeg_size[1]} JPEGs, "
                               f"{image_size}x{image_size} crops",
                     **_stream_in_turns(load_dataset("folder", data_dir=jpeg_root,
                                                     image_size=image_size),
                                        batch=jpeg_batch, passes=passes, blocks=blocks)})
        for source, words in SOURCES.items():
            print(f"  {source}", flush=True)
            folder = os.path.join(root, source)
            arguments = write_source(source, folder, num_train=num_train,
                                     num_test=max(10, num_train // 60))
            rows.append({"source": words, **_stream_in_turns(
                load_dataset(arguments.pop("name"), **arguments), batch=batch,
                passes=passes, blocks=blocks)})
        print("  tfds", flush=True)
        tfds_root = os.path.join(root, "tfds")
        read = _write_tfds_jpegs(tfds_root, jpegs, jpeg_size)
        dataset = load_dataset("tfds:bench_jpegs", data_dir=tfds_root, image_size=image_size)
        rows.append({"source": f"TensorFlow Datasets, {jpeg_size[0]}x{jpeg_size[1]} JPEGs, "
                               f"{image_size}x{image_size} crops",
                     **_stream_in_turns(dataset, batch=jpeg_batch, passes=passes,
                                        blocks=blocks),
                     "read_seconds": read()})
    return rows


def _stream_in_turns(dataset, *, batch, passes, blocks):
    """`benchmarks.pipeline.loader_throughput`'s stream for each setting, in blocks taken in turns.

    A block is one iterator of the setting: its first pass (a folder's files
    decoded), then `passes` more; the iterator is gone before the other
    setting's block starts, so that no stream fills its buffers while the
    other is timed (an idle autotuned stream took a quarter of a JPEG pass
    that way). The order alternates from block to block.

    Returns:
        dict: `images` a pass, and per setting `first_pass` (images/s, the
        median over blocks) and `later_passes` (spread).
    """
    from benchmarks.timing import spread

    steps = dataset.num_train // batch
    rates = {setting: {"first": [], "later": []} for setting in AUTOTUNE}
    for block in range(blocks):
        for setting in AUTOTUNE[block % 2:] + AUTOTUNE[:block % 2]:
            stream = iter(autotuned(dataset.train(batch, repeat=True, drop_remainder=True),
                                    setting))
            for i in range(passes + 1):
                start = time.perf_counter()
                for _ in range(steps):
                    next(stream)
                rate = steps * batch / (time.perf_counter() - start)
                rates[setting]["later" if i else "first"].append(rate)
            del stream
    return {"images": steps * batch,
            **{setting: {"first_pass": float(np.median(r["first"])),
                         "later_passes": spread(r["later"])}
               for setting, r in rates.items()}}


def _write_tfds_jpegs(root, n, size):
    """A tfds dataset `bench_jpegs` of `n` random JPEGs; returns a function timing its reads.

    The function reads the dataset's splits as `datasets.tfds` does at load
    (one pass each), with autotuning off and on in turns, 3 times each.
    """
    import tensorflow_datasets as tfds

    from datasets.input_pipeline import without_autotune

    tfds.disable_progress_bar()
    rng = np.random.default_rng(0)
    features = tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
        "label": tfds.features.ClassLabel(names=["a", "b", "c", "d"])})

    def random_images(count):
        return [(i, {"image": rng.integers(0, 256, (size[1], size[0], 3), np.uint8),
                     "label": i % 4}) for i in range(count)]

    tfds.dataset_builders.store_as_tfds_dataset(
        name="bench_jpegs", version="1.0.0", features=features, data_dir=root,
        split_datasets={"train": random_images(n), "test": random_images(max(4, n // 10))})

    def read():
        builder = tfds.builder_from_directory(os.path.join(root, "bench_jpegs", "1.0.0"))
        seconds = {setting: [] for setting in AUTOTUNE}
        for turn in range(3):
            for setting in AUTOTUNE[turn % 2:] + AUTOTUNE[:turn % 2]:
                examples = autotuned(without_autotune(builder.as_dataset(
                    split="train", shuffle_files=False,
                    decoders={"image": tfds.decode.SkipDecoding()})), setting)
                start = time.perf_counter()
                for _ in examples.as_numpy_iterator():
                    pass
                seconds[setting].append(time.perf_counter() - start)
        return seconds

    return read


# The lines of train.py's log this reads: each epoch's, and the stage's last.
_EPOCH = re.compile(r"^\s+epoch (\d+)/(\d+) .*[\[;] ?(\d+) s\]$")
_STAGE = re.compile(r"^\[train\] done in ([\d.]+) s")


def train_stage(trees, *, runs, epochs):
    """`python train.py --stages train --train.epochs EPOCHS` from each checkout, in turns.

    Args:
        trees: dict {label: root of a checkout}.

    Returns:
        dict per label: a list of `parse_train_log` dicts, one a run, with
        the run's `train_result.json` fields `seconds`, `train_seconds` and
        `held_out_seconds` where it has them.
    """
    labels = list(trees)
    out = {label: [] for label in labels}
    for turn in range(runs):
        for label in labels[turn % len(labels):] + labels[:turn % len(labels)]:
            with tempfile.TemporaryDirectory() as tmp:
                run_dir = os.path.join(tmp, "run")
                command = [sys.executable, "train.py", "--stages", "train",
                           "--train.epochs", str(epochs), "--run-dir", run_dir]
                print(f"  round {turn + 1}/{runs}: {label} ...", flush=True)
                done = subprocess.run(command, cwd=trees[label], capture_output=True, text=True)
                log = done.stdout + done.stderr
                if done.returncode:
                    raise RuntimeError(f"{' '.join(command)} in {trees[label]} failed "
                                       f"(exit {done.returncode}): {log.strip()[-1500:]}")
                with open(os.path.join(run_dir, "train_result.json")) as f:
                    written = json.load(f)
            entry = parse_train_log(log)
            entry.update({k: written[k] for k in ("seconds", "train_seconds",
                                                  "held_out_seconds", "images_per_second")
                          if k in written})
            out[label].append(entry)
    return out


def parse_train_log(log):
    """The train stage's times in a train.py log.

    Returns:
        dict: `stage_seconds` (the `[train] done in` line), `epochs_end_seconds`
        (the last epoch line's elapsed seconds, whole, counted from just
        before `fit`) and `after_epochs_seconds`, the difference.

    Raises:
        ValueError: the log has no epoch line or no stage line.
    """
    epoch_ends = [int(m.group(3)) for m in map(_EPOCH.match, log.splitlines()) if m]
    stage = [float(m.group(1)) for m in map(_STAGE.match, log.splitlines()) if m]
    if not epoch_ends or not stage:
        raise ValueError("the train.py log has no epoch line or no '[train] done in' line")
    return {"stage_seconds": stage[-1], "epochs_end_seconds": epoch_ends[-1],
            "after_epochs_seconds": round(stage[-1] - epoch_ends[-1], 1)}
