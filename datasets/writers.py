"""Writes images in the on-disk formats the sources read: IDX, CIFAR python batches, folders.

Tests and benchmarks make their data with these, so that what they measure
goes through the real readers (`datasets.idx`, `datasets.cifar`,
`datasets.folder`) from real files; nothing here is used to train.
"""

import gzip
import os
import pickle

import numpy as np

from datasets import cifar, idx


def idx_bytes(array, magic):
    """One IDX file: big-endian magic and dimensions, then the uint8 values."""
    header = np.array([magic, *array.shape], ">u4").tobytes()
    return header + np.asarray(array, np.uint8).tobytes()


def write_idx(folder, split, images, labels, *, gz):
    """Writes the images and labels files of `split` ("train" or "test") into `folder`.

    Args:
        folder: str or path, created if missing.
        split: str, a key of `datasets.idx.FILES`.
        images: uint8 `(N, 28, 28)`.
        labels: ints `(N,)`.
        gz: bool, gzip them as keras.datasets downloads them.
    """
    os.makedirs(folder, exist_ok=True)
    image_name, label_name = idx.FILES[split]
    for name, content in ((image_name, idx_bytes(images, idx.IMAGE_MAGIC)),
                          (label_name, idx_bytes(labels, idx.LABEL_MAGIC))):
        with open(os.path.join(folder, name + ".gz" if gz else name), "wb") as f:
            f.write(gzip.compress(content, compresslevel=1) if gz else content)


def cifar_files(name, *, train, test, class_names):
    """The files of a CIFAR python archive, as `{file name: bytes}`.

    Args:
        name: str, "cifar10" or "cifar100".
        train: (uint8 images `(N, 32, 32, 3)`, int labels), split evenly over
            the format's training batches.
        test: the same for the test batch.
        class_names: list of str.
    """
    fmt = cifar.FORMATS[name]
    files = {}
    for (images, labels), batch_names in ((train, fmt.train), (test, fmt.test)):
        for batch_name, part in zip(batch_names, np.array_split(np.arange(len(labels)),
                                                                len(batch_names))):
            files[batch_name] = _pickle({
                b"batch_label": batch_name.encode(),
                fmt.label_key: [int(v) for v in np.asarray(labels)[part]],
                # Rows store the red, green, then blue 32x32 planes.
                b"data": images[part].transpose(0, 3, 1, 2).reshape(len(part), 3072),
                b"filenames": [f"{i}.png".encode() for i in part]})
    files[fmt.meta] = _pickle({fmt.names_key: [n.encode() for n in class_names]})
    return files


def write_files(folder, files):
    """Writes `{file name: bytes}` into `folder` (created if missing)."""
    os.makedirs(folder, exist_ok=True)
    for file_name, content in files.items():
        with open(os.path.join(folder, file_name), "wb") as f:
            f.write(content)


def write_image_folder(root, split, images, labels, *, class_names, suffix=".png", **options):
    """Writes one image file a label under `root/split/<class name>/`, as `datasets.folder` reads.

    Args:
        root: str or path.
        split: str, "train" or "val".
        images: uint8 `(N, H, W)` or `(N, H, W, 3)`.
        labels: ints `(N,)`, indices into `class_names`.
        class_names: list of str, the folder names.
        suffix: str, the file type PIL writes (".png", ".jpg").
        **options: PIL's save options, e.g. `quality=90`.
    """
    from PIL import Image

    for c in set(int(v) for v in labels):
        os.makedirs(os.path.join(root, split, class_names[c]), exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image).save(
            os.path.join(root, split, class_names[int(label)], f"{i}{suffix}"), **options)


def _pickle(obj):
    return pickle.dumps(obj, protocol=2)  # as the official Python 2 files
