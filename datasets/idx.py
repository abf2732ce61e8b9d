"""The `mnist` and `fashion_mnist` datasets, read from their IDX files (or Keras's mnist.npz).

Both hold 60,000 training and 10,000 test 28x28 gray images in the IDX format
of http://yann.lecun.com/exdb/mnist/ (`train-images-idx3-ubyte`, ... gzipped
as keras.datasets downloads them, or not). Read from `data_dir`, else the Keras
cache (`$KERAS_HOME/datasets/fashion-mnist/` as keras.datasets lays it out;
`mnist.npz` or `mnist/` for MNIST), else for Fashion-MNIST the Debian/Ubuntu
package `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist`), else
downloaded into the Keras cache from keras.datasets' files, with its hashes
(`resnet_keras.fetch`); nothing is downloaded into a `data_dir`.

The images are zero-padded by 2 pixels a side to 32x32, not resampled: every
pixel keeps the value recorded, and 32x32 is the native input of the CIFAR
nets (He et al. 2015, arXiv 1512.03385, sec. 4.2), whose recipe then applies
as is. Gray is replicated to 3 channels; 60,000 images take 184 MB (uint8).
Augmentation (`auto`), CIFAR-style: zero-pad 4, random 32x32 crop, and for
Fashion-MNIST a random horizontal flip (a mirrored garment is the same
garment); none for MNIST, where a mirrored digit is another symbol or none.
"""

import dataclasses
import gzip
import os
import zlib

import numpy as np

from datasets.augmentation import native_augmentation
from datasets.input_pipeline import Split, check_native_size, keras_datasets_dir
from resnet_keras import fetch
from resnet_keras.backend import tf

IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049  # unsigned bytes, 3 and 1 dimensions
SIDE = 28
BORDER = (32 - SIDE) // 2
PAD = 4
URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
# (images, labels) of each split, without the .gz the downloads have.
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
# keras.datasets' sha256 of each file it downloads from URL (keras/datasets/
# mnist.py and fashion_mnist.py): MNIST as one .npz, Fashion-MNIST as IDX files.
MNIST_DOWNLOAD = {"mnist.npz":
                  "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"}
FASHION_MNIST_DOWNLOAD = {
    "train-images-idx3-ubyte.gz":
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz":
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz":
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz":
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}


@dataclasses.dataclass(frozen=True)
class Source:
    """Where one dataset in the IDX format is looked for, and how it is augmented."""

    title: str
    class_names: tuple
    cache_folder: str  # under the Keras cache, as keras.datasets lays it out
    flip: bool
    # {file name: sha256} keras.datasets downloads, into `download_folder` of the cache.
    downloads: dict
    download_folder: str
    npz: str | None = None  # Keras's single-file copy, in the Keras cache itself
    system_folder: str | None = None
    package: str | None = None  # the Debian/Ubuntu package that installs it


SOURCES = {
    "mnist": Source("MNIST", tuple(str(d) for d in range(10)), "mnist", flip=False,
                    downloads=MNIST_DOWNLOAD, download_folder="", npz="mnist.npz"),
    "fashion_mnist": Source(
        "Fashion-MNIST", ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                          "Shirt", "Sneaker", "Bag", "Ankle boot"),
        "fashion-mnist", flip=True, downloads=FASHION_MNIST_DOWNLOAD,
        download_folder="fashion-mnist", system_folder="/usr/share/datasets/fashion-mnist",
        package="dataset-fashion-mnist"),
}


def load(name, *, data_dir, image_size, augmentation):
    """Reads the official train and test splits of MNIST or Fashion-MNIST.

    Args:
        name: str, a key of `SOURCES`.
        data_dir: a folder holding the four IDX files (`.gz` or not), or for
            `mnist` also `mnist.npz` or that file; None to look in the Keras
            cache, then in `Source.system_folder`, then to download
            `Source.downloads` into the Keras cache.
        image_size: None or 32.
        augmentation: str, one of `AUGMENTATIONS` but "inception".

    Returns:
        dict, the keyword arguments of `Dataset` but `name`.

    Raises:
        FileNotFoundError: the files are not where they were looked for, and
            `data_dir` was given or downloads are off.
        fetch.DownloadError: a download failed or its hash did not match.
        ValueError: an `image_size` other than 32, `augmentation="inception"`,
            or a malformed or incomplete file (the message names it).
    """
    source = SOURCES[name]
    check_native_size(name, image_size)
    augment, words = native_augmentation(name, augmentation, pad=PAD, flip=source.flip,
                                         cite=" (CIFAR-style, He et al. 2015, sec. 4.2)")
    found, searched = _find(source, data_dir)
    if found is None and data_dir is not None:
        raise FileNotFoundError(_not_found(source, searched))
    if found is None:
        found = _download(source, searched)
    if isinstance(found, str):
        splits = _read_npz(found, source)
    else:
        splits = {split: _read_split(found[images], found[labels], source)
                  for split, (images, labels) in FILES.items()}
    (x_train, y_train), (x_test, y_test) = splits["train"], splits["test"]
    return dict(class_names=source.class_names, image_shape=(32, 32, 3), augmentation=words,
                train=Split(y_train, images=_to_rgb32(x_train)),
                test=Split(y_test, images=_to_rgb32(x_test)),
                augment_fn=augment, eval_fn=tf.identity)


def _to_rgb32(images):
    """`(N, 28, 28)` gray -> `(N, 32, 32, 3)`, zero border, every pixel unchanged."""
    out = np.zeros((len(images), 32, 32, 3), np.uint8)
    out[:, BORDER:BORDER + SIDE, BORDER:BORDER + SIDE, :] = images[..., None]
    return out


def _find(source, data_dir):
    """The `mnist.npz` path or `{IDX name: path}` of the first place holding the data
    (None if none), and the places searched."""
    if data_dir is not None:
        root = os.fspath(data_dir)
        if source.npz and os.path.isfile(root):
            return root, [root]
        places = [(root, True)]
    else:
        cache = keras_datasets_dir()
        places = [(os.path.join(cache, source.cache_folder), True)]
        if source.npz:
            # Only the .npz: IDX files there could be either dataset's.
            places.append((cache, False))
        if source.system_folder:
            places.append((source.system_folder, True))
    for folder, idx_files in places:
        # A cache folder left incomplete (by hand, or by a download stopped
        # between files) is completed by the download, not refused.
        partial_ok = data_dir is None and folder == places[0][0]
        files = _idx_files(folder, source, partial_ok=partial_ok) if idx_files else {}
        if files:
            return files, None
        if source.npz and os.path.isfile(os.path.join(folder, source.npz)):
            return os.path.join(folder, source.npz), None
    return None, [folder for folder, _ in places]


def _idx_files(folder, source, *, partial_ok=False):
    """`{IDX name: path}` of the four files in `folder`, `.gz` or not; {} if it has none.

    Raises:
        ValueError: `folder` holds some of the files but not all (with
            `partial_ok`, that is {} too).
    """
    names = [n for pair in FILES.values() for n in pair]
    found = {}
    for n in names:
        for path in (os.path.join(folder, n + ".gz"), os.path.join(folder, n)):
            if os.path.isfile(path):
                found[n] = path
                break
    missing = [n for n in names if n not in found]
    if missing and partial_ok:
        return {}
    if found and missing:
        raise ValueError(f"{folder} is an incomplete {source.title} folder: "
                         f"{', '.join(n + '[.gz]' for n in missing)} missing. Copy all four "
                         f"IDX files there.")
    return found


def _not_found(source, searched):
    """The one-line message of a dataset that is not in the `data_dir` given."""
    looked_for = " or ".join(filter(None, [
        source.npz, "the four IDX files (" + ", ".join(
            n + "[.gz]" for pair in FILES.values() for n in pair) + ")"]))
    return (f"{source.title} not found: looked for {looked_for} in {', '.join(searched)}. "
            f"Nothing is downloaded into a data_dir: put the files there, or leave data_dir "
            f"unset to use the Keras cache ({keras_datasets_dir()}; set KERAS_HOME to move "
            f"it), where {', '.join(source.downloads)} from {URL} are downloaded.")


def _download(source, searched):
    """The data fetched into the Keras cache, as `_find` returns it, after the places searched.

    Raises:
        FileNotFoundError: downloads are off; the message names every file and
            where it goes, and the other ways to the data.
        fetch.DownloadError: a download failed or its hash did not match.
    """
    folder = os.path.join(keras_datasets_dir(), source.download_folder)
    remotes = [fetch.Remote(url=URL + name, file_hash=digest, path=os.path.join(folder, name))
               for name, digest in source.downloads.items()]
    apt = (f"on Debian/Ubuntu `apt-get install {source.package}` (it installs them in "
           f"{source.system_folder}), or " if source.package else "")
    paths = fetch.fetch_all(remotes, what=f"{source.title} (not in {', '.join(searched)})",
                            alternatives=f"{apt}pass data_dir=<a folder holding them>")
    if source.npz in source.downloads:
        return paths[0]
    return _idx_files(folder, source)


def _read_split(images_path, labels_path, source):
    """uint8 images `(N, 28, 28)` and int32 labels `(N,)` of one split's IDX files."""
    images = _read_idx(images_path, IMAGE_MAGIC, "images")
    labels = _read_idx(labels_path, LABEL_MAGIC, "labels")
    return _checked(images, labels, images_path, labels_path, source)


def _read_idx(path, magic, kind):
    """The uint8 array of an IDX file, gzipped or not, after checking its header."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        if data[:2] == b"\x1f\x8b":  # the gzip magic, whatever the file is named
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path} is not a readable gzip file, truncated or corrupt ({e}); "
                         f"download it again.") from None
    ndim = 3 if magic == IMAGE_MAGIC else 1
    header = 4 * (1 + ndim)
    if len(data) < header:
        raise ValueError(f"{path} is not an IDX {kind} file: {len(data)} bytes, shorter than "
                         f"its {header}-byte header; download it again.")
    found, *dims = np.frombuffer(data[:header], ">u4").tolist()
    if found != magic:
        raise ValueError(f"{path} is not an IDX {kind} file: magic number {found}, expected "
                         f"{magic}; download it again.")
    if ndim == 3 and dims[1:] != [SIDE, SIDE]:
        raise ValueError(f"{path} holds {dims[1]}x{dims[2]} images, not {SIDE}x{SIDE}.")
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise ValueError(f"{path} is truncated or corrupt: its header promises {dims[0]} "
                         f"{kind} ({expected} bytes), the file has {len(data)} bytes; "
                         f"download it again.")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def _read_npz(path, source):
    """{split: (images, labels)} of Keras's `mnist.npz` (`x_train`, `y_train`, ...)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError) as e:
        # ValueError also covers object arrays, which would need unpickling.
        raise ValueError(f"{path} is not a readable {source.npz} ({e}); download it "
                         f"again.") from None
    missing = [k for s in ("train", "test") for k in (f"x_{s}", f"y_{s}") if k not in arrays]
    if missing:
        raise ValueError(f"{path} is not Keras's {source.npz}: {', '.join(missing)} missing.")
    splits = {}
    for split in ("train", "test"):
        images = arrays[f"x_{split}"]
        if images.dtype != np.uint8 or images.shape[1:] != (SIDE, SIDE):
            raise ValueError(f"x_{split} in {path} is {images.dtype} {images.shape}; expected "
                             f"uint8 (N, {SIDE}, {SIDE}).")
        splits[split] = _checked(images, arrays[f"y_{split}"], f"x_{split} in {path}",
                                 f"y_{split} in {path}", source)
    return splits


def _checked(images, labels, images_name, labels_name, source):
    """`(images, int32 labels)` once their counts match and the labels are classes.

    Labels of shape `(N, 1)` or `(1, N)`, as some tools save them, are read as `(N,)`.
    """
    num_classes = len(source.class_names)
    if labels.ndim > 1 and sum(d != 1 for d in labels.shape) <= 1:
        labels = labels.reshape(-1)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{labels_name} is {labels.dtype} {labels.shape}; expected integer "
                         f"class labels 0..{num_classes - 1} of shape (N,), one per image.")
    if len(labels) != len(images):
        raise ValueError(f"{images_name} holds {len(images)} images but {labels_name} holds "
                         f"{len(labels)} labels; both files must be from the same split.")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{labels_name} has labels outside 0..{num_classes - 1}.")
    return images, labels.astype(np.int32)
