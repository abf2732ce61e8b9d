"""`python -m benchmarks`' input-pipeline row: images/s the image-folder loader delivers.

Random JPEGs at an ImageNet-like size, decoded, cropped, flipped and batched
as train.py reads them, against the training row's resnet50 step: whether
the loader keeps up.
"""

import tempfile
import time

import numpy as np

from benchmarks.timing import spread
from datasets import writers


def write_jpeg_folder(root, *, classes, per_class, size, seed=0):
    """A folder dataset of random JPEGs at an ImageNet-like size."""
    rng = np.random.default_rng(seed)
    class_names = [f"class{c}" for c in range(classes)]
    for split, n in (("train", per_class * classes), ("val", classes)):
        writers.write_image_folder(root, split,
                                   rng.integers(0, 256, (n, size[1], size[0], 3), np.uint8),
                                   np.arange(n) % classes, class_names=class_names,
                                   suffix=".jpg", quality=90)


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


def pipeline_throughput(*, image_size, batch_size, classes, per_class, jpeg_size, repeats):
    """Images/s the image-folder loader delivers: decode, random-resized crop, flip, batch."""
    from datasets import load_dataset
    with tempfile.TemporaryDirectory() as root:
        write_jpeg_folder(root, classes=classes, per_class=per_class, size=jpeg_size)
        dataset = load_dataset("folder", data_dir=root, image_size=image_size)
        return loader_throughput(dataset, batch_size=batch_size, passes=repeats)["later_passes"]


def pipeline_row(*, image_size, batch_size, classes, per_class, jpeg_size, repeats,
                 training_images_per_second) -> dict:
    """The loader's images/s at `image_size` against the train step's, and whether it keeps up.

    Args:
        training_images_per_second: the spread of the train step it feeds.

    Returns:
        dict: `images_per_second` (spread), `jpeg_size`,
        `training_images_per_second` and `keeps_up` (medians compared).
    """
    rate = pipeline_throughput(image_size=image_size, batch_size=batch_size, classes=classes,
                               per_class=per_class, jpeg_size=jpeg_size, repeats=repeats)
    step = training_images_per_second["median"]
    return {"images_per_second": rate, "jpeg_size": jpeg_size,
            "training_images_per_second": step, "keeps_up": rate["median"] > step}
