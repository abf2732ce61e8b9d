"""The `cifar10` and `cifar100` datasets, read from the official python archives.

The archives of https://www.cs.toronto.edu/~kriz/cifar.html hold 50,000
training and 10,000 test 32x32 images (CIFAR-100 with its 100 fine labels).
Read from `data_dir` or from the Keras cache (`$KERAS_HOME/datasets`, default
`~/.keras/datasets`), where the archive is downloaded (as
`cifar-10-batches-py.tar.gz`, keras.datasets' name, checked against its
sha256; `resnet_keras.fetch`) when neither holds it; nothing is downloaded
into a `data_dir`. Augmentation (`auto`) as in He et
al. 2015 (arXiv 1512.03385), sec. 4.2: zero-pad 4 pixels, random 32x32 crop,
random horizontal flip. The paper's 45k/5k split for choosing hyper-parameters is
`val_split=5000`.
"""

import dataclasses
import io
import os
import pickle
import tarfile

import numpy as np

from datasets.augmentation import native_augmentation
from datasets.input_pipeline import Split, check_native_size, keras_datasets_dir
from resnet_keras import fetch
from resnet_keras.backend import tf

URL = "https://www.cs.toronto.edu/~kriz/"
PAD = 4
PAPER = " (He et al. 2015, sec. 4.2)"


@dataclasses.dataclass(frozen=True)
class Format:
    """Where one CIFAR archive keeps its batches, labels and class names."""

    title: str
    archive: str
    folder: str
    train: tuple
    test: tuple
    meta: str
    label_key: bytes
    names_key: bytes
    sha256: str  # of `archive`, as keras.datasets checks it (keras/datasets/cifar10.py)

    @property
    def cache_name(self):
        """The archive's name in the Keras cache, as keras.datasets downloads it."""
        return f"{self.folder}.tar.gz"


FORMATS = {
    "cifar10": Format("CIFAR-10", "cifar-10-python.tar.gz", "cifar-10-batches-py",
                      tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
                      "batches.meta", b"labels", b"label_names",
                      "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),
    "cifar100": Format("CIFAR-100", "cifar-100-python.tar.gz", "cifar-100-python",
                       ("train",), ("test",), "meta", b"fine_labels", b"fine_label_names",
                       "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"),
}


def load(name, *, data_dir, image_size, augmentation):
    """Reads the official train and test batches of CIFAR-10 or CIFAR-100.

    Args:
        name: str, a key of `FORMATS`.
        data_dir: the archive, a folder holding it or its extracted folder, or
            the extracted folder itself; None for the Keras cache, where the
            archive is downloaded if missing.
        image_size: None or 32.
        augmentation: str, one of `AUGMENTATIONS` but "inception".

    Returns:
        dict, the keyword arguments of `Dataset` but `name`.

    Raises:
        FileNotFoundError: no archive or extracted folder in `data_dir`, or in
            the Keras cache with downloads off.
        fetch.DownloadError: the download failed or its hash did not match.
        ValueError: an `image_size` other than 32, `augmentation="inception"`,
            or a malformed archive.
    """
    fmt = FORMATS[name]
    check_native_size(name, image_size)
    augment, words = native_augmentation(name, augmentation, pad=PAD, flip=True, cite=PAPER)
    path, searched = _find(fmt, data_dir)
    if path is None and data_dir is not None:
        raise FileNotFoundError(
            f"{fmt.title} not found: looked for {fmt.archive} or its extracted folder "
            f"{fmt.folder}/ in {searched}. Nothing is downloaded into a data_dir: put "
            f"{URL}{fmt.archive} there, or leave data_dir unset to use the Keras cache "
            f"({keras_datasets_dir()}; set KERAS_HOME to move it), where it is downloaded.")
    if path is None:
        remote = fetch.Remote(url=URL + fmt.archive, file_hash=fmt.sha256,
                              path=os.path.join(keras_datasets_dir(), fmt.cache_name))
        path = fetch.fetch(remote, what=f"{fmt.title} (not in {searched})",
                           alternatives="pass data_dir=<the archive or its folder>")
    files = _read_members(path, fmt.train + fmt.test + (fmt.meta,), fmt.title)
    meta = _unpickle(files[fmt.meta], fmt.meta, fmt.title)
    if fmt.names_key not in meta:
        raise ValueError(f"{fmt.meta} in {path} lacks {fmt.names_key!r}; download the "
                         f"archive again.")
    class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[fmt.names_key]]
    x_train, y_train = _batches(files, fmt.train, fmt)
    x_test, y_test = _batches(files, fmt.test, fmt)
    for labels in (y_train, y_test):
        if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise ValueError(f"{path} has labels outside 0..{len(class_names) - 1}; "
                             f"download the archive again.")
    return dict(class_names=class_names, image_shape=(32, 32, 3), augmentation=words,
                train=Split(y_train, images=x_train), test=Split(y_test, images=x_test),
                augment_fn=augment, eval_fn=tf.identity)


class _Unpickler(pickle.Unpickler):
    """Unpickles only what CIFAR batches hold: a pickle can run any code it names."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"),
                ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
                ("numpy", "ndarray"), ("numpy", "dtype"),
                ("_codecs", "encode")}  # bytes in a protocol-2 pickle written by Python 3

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a CIFAR batch")
        return super().find_class(module, name)


def _find(fmt, data_dir):
    """Path of the archive or extracted folder (None if absent), and the place searched."""
    root = os.fspath(data_dir) if data_dir is not None else keras_datasets_dir()
    if os.path.isfile(root):
        return root, root
    candidates = [
        root if os.path.isfile(os.path.join(root, fmt.meta)) else None,  # the extracted folder
        os.path.join(root, fmt.folder),
        os.path.join(root, f"{fmt.folder}-target", fmt.folder),  # Keras 3 cache
        os.path.join(root, fmt.archive),
        os.path.join(root, fmt.cache_name),  # tf_keras cache
    ]
    found = [path for path in candidates if path is not None and os.path.exists(path)]
    return (found[0] if found else None), root


def _read_members(path, names, title):
    """{name: bytes} of the named files, from an extracted folder or the archive."""
    if os.path.isdir(path):
        missing = [n for n in names if not os.path.isfile(os.path.join(path, n))]
        if missing:
            raise ValueError(f"{path} is an incomplete {title} folder: {', '.join(missing)} "
                             f"missing. Extract the archive again.")
        result = {}
        for n in names:
            with open(os.path.join(path, n), "rb") as f:
                result[n] = f.read()
        return result
    result = {}
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                name = os.path.basename(member.name)
                if member.isfile() and name in names and name not in result:
                    result[name] = archive.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ValueError(f"{path} is not a readable {title} archive ({e}); download it "
                         f"again.") from None
    missing = [n for n in names if n not in result]
    if missing:
        raise ValueError(f"{path} is not a complete {title} archive: {', '.join(missing)} "
                         f"missing. Download it again.")
    return result


def _unpickle(data, name, title):
    try:
        entry = _Unpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise ValueError(f"{name} is not a {title} batch file ({e}).") from None
    if not isinstance(entry, dict):
        raise ValueError(f"{name} is not a {title} batch file (no dict inside).")
    return entry


def _batches(files, names, fmt):
    images, labels = [], []
    for name in names:
        entry = _unpickle(files[name], name, fmt.title)
        if b"data" not in entry or fmt.label_key not in entry:
            raise ValueError(f"{name} is not a {fmt.title} batch file: it lacks b'data' or "
                             f"{fmt.label_key!r}.")
        data = np.asarray(entry[b"data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ValueError(f"{name}: expected b'data' of shape (N, 3072), got {data.shape}.")
        # Rows store the red, green, then blue 32x32 planes.
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(entry[fmt.label_key], dtype=np.int32))
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)
