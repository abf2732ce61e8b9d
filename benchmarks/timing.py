"""How every benchmark times: medians over rounds taken in turns, peak memory, one synthetic batch.

Each figure is a median over repeated timed runs after warm-up, with min and
max beside it; what a ratio compares is timed in turns in the same process,
and taken round by round (`paired_ratio`).
"""

import threading
import time

import numpy as np

from datasets.input_pipeline import without_autotune
from resnet_keras.backend import keras, tf


def spread(values, scale=1.0) -> dict:
    """median/min/max of `values` times `scale`."""
    values = np.asarray(values, dtype=float) * scale
    return {"median": float(np.median(values)), "min": float(np.min(values)),
            "max": float(np.max(values))}


def throughput(seconds, *, images) -> dict:
    """Images/s of rounds that each took `seconds[i]` over `images`: their spread plus `rounds`."""
    rounds = [images / s for s in seconds]
    return dict(spread(rounds), rounds=rounds)


def paired_ratio(ours, reference) -> float:
    """Median over rounds of ours / reference, each ratio taken within one round.

    Args:
        ours, reference: dicts with `rounds` (`throughput`), timed in the same turns.
    """
    return float(np.median(np.divide(ours["rounds"], reference["rounds"])))


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
        ({name: `throughput` of its rounds}, {name: peak RSS in MB during its
        epochs}); the RSS is the whole process's, with every model of
        `models` resident.
    """
    data = synthetic_pipeline(image_size, batch_size, classes)
    names = list(models)
    seconds = {name: [] for name in names}
    peak_mb = dict.fromkeys(names, 0.0)
    for turn in range(repeats + 1):
        for name in names[turn % len(names):] + names[:turn % len(names)]:
            timer = EpochTimer()
            with PeakRSS() as memory:
                models[name].fit(data, epochs=1, steps_per_epoch=steps, callbacks=[timer],
                                 verbose=0)
            peak_mb[name] = max(peak_mb[name], memory.peak_mb)
            if turn:
                seconds[name].append(timer.seconds[0])
    return ({name: throughput(s, images=steps * batch_size) for name, s in seconds.items()},
            peak_mb)
