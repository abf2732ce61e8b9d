"""The datasets the nets train and are evaluated on, as seeded tf.data pipelines.

Every dataset yields float32 RGB pixels in [0, 255] (the models normalize
inside) and int32 labels. Augmentation follows He et al. 2015 (arXiv
1512.03385): sec. 4.2 for CIFAR, sec. 3.4 (Inception-style crops) for ImageNet.

    ds = load_dataset("digits")  # or "cifar10", "cifar100", "folder" + data_dir
    model.fit(ds.train(128, repeat=True), steps_per_epoch=ds.num_train // 128,
              epochs=30, validation_data=ds.test(256))

Protocols:

- `digits` (default; offline, embedded in scikit-learn): the 1,797 8x8
  handwritten digits of `sklearn.datasets.load_digits`, values 0..16 scaled to
  0..255, resized to 32x32 with bilinear interpolation (`tf.image.resize`,
  half-pixel centers), rounded to uint8, gray replicated to 3 channels. Split
  with `train_test_split(test_size=0.2, stratify=y, random_state=0)` into
  1,437 training and 360 test images, fixed whatever `seed` is. Augmentation:
  zero-pad 2 pixels and take a random 32x32 crop (a shift of at most 2 pixels,
  half a pixel of the original 8x8 image); no flip, since a mirrored digit is
  another symbol or none.
- `cifar10`, `cifar100`: the official python archives from
  https://www.cs.toronto.edu/~kriz/cifar.html, 50,000 training and 10,000 test
  32x32 images (CIFAR-100 with its 100 fine labels). Read from `data_dir` or
  from the Keras cache (`$KERAS_HOME/datasets`, default `~/.keras/datasets`);
  nothing is downloaded. Augmentation as in sec. 4.2: zero-pad 4 pixels, random
  32x32 crop, random horizontal flip. The paper's 45k/5k split for choosing
  hyper-parameters is `val_split=5000`.
- `folder`: an ImageNet-style tree `data_dir/train/<class>/*` and
  `data_dir/val/<class>/*`, `val` being the test split; class names are the
  sorted folder names under `train`. Every file is checked once up front and
  those TensorFlow cannot decode are skipped and logged. Training: random
  crop of 8%-100% of the area with aspect ratio 3/4-4/3, resized to
  `image_size` (default 224), random horizontal flip. Evaluation: resize the
  shorter side to `image_size * 256 / 224`, center crop `image_size`, round to
  whole pixel values (so `test()` sees exactly the pixels of `test_arrays()`).

`val_split` (all datasets) holds out a stratified part of the training split,
served by `Dataset.val()`; `test()` is always the official test split.
"""

import concurrent.futures
import dataclasses
import io
import logging
import os
import pickle
import tarfile

import numpy as np

from resnet_keras.backend import tf

DATASETS = ("digits", "cifar10", "cifar100", "folder")

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"
FOLDER_LAYOUT = ("data_dir/train/<class name>/<image files>  and  "
                 "data_dir/val/<class name>/<image files>")
# What tf.io.decode_image reads (MPO is a multi-picture JPEG from cameras).
DECODABLE_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP")

_DIGITS_SHIFT = 2
_CIFAR_PAD = 4
_RESIZE_RATIO = 256 / 224  # ImageNet evaluation: resize to 256, center crop 224.
_LOG_FIRST_SKIPPED = 5

_AUGMENTATION = {
    "digits": f"zero-pad {_DIGITS_SHIFT} + random 32x32 crop (no flip)",
    "cifar": f"zero-pad {_CIFAR_PAD} + random 32x32 crop + horizontal flip "
             "(He et al. 2015, sec. 4.2)",
    "folder": "random-resized crop (area 0.08-1, aspect 3/4-4/3) + horizontal flip",
}

logger = logging.getLogger(__name__)


class _Split:
    """Labelled examples: in-memory uint8 images or paths of image files."""

    def __init__(self, labels, *, images=None, paths=None):
        self.labels = np.asarray(labels, dtype=np.int32)
        self.images = images
        self.paths = paths
        self._tensors = None

    def __len__(self):
        return len(self.labels)

    def subset(self, indices):
        return _Split(self.labels[indices],
                      images=None if self.images is None else self.images[indices],
                      paths=None if self.paths is None else [self.paths[i] for i in indices])

    def load(self, index):
        """uint8 image `index` as a tensor (decoded from its file, any size)."""
        if self._tensors is None:
            # Converted once, eagerly even when first called while a pipeline
            # is traced, so every pipeline captures this one tensor instead of
            # embedding another copy of the images in its graph.
            with tf.init_scope():
                self._tensors = tf.constant(self.images if self.paths is None else self.paths)
        if self.paths is None:
            return tf.gather(self._tensors, index)
        image = tf.io.decode_image(tf.io.read_file(tf.gather(self._tensors, index)),
                                   channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        return image


class Dataset:
    """A dataset split into train (and optionally val) and test, as tf.data pipelines.

    Built by `load_dataset`. Pipelines yield `(images, labels)` batches:
    float32 `(batch, H, W, 3)` RGB in [0, 255] and int32 `(batch,)`.

    Attributes:
        name: str, one of `DATASETS`.
        class_names: tuple of str, index = label.
        num_classes: int.
        image_shape: (H, W, 3) of every image the pipelines yield.
        num_train: int, training images (after holding out `val_split`).
        num_val: int, held-out validation images (0 without `val_split`).
        num_test: int, test images.
        augmentation: str, the training augmentation, in words.
        skipped_files: tuple of str, files of a `folder` dataset left out
            because they are not decodable images.
    """

    def __init__(self, *, name, class_names, image_shape, augmentation, train, test,
                 val=None, augment_fn, eval_fn, skipped_files=()):
        self.name = name
        self.class_names = tuple(class_names)
        self.num_classes = len(self.class_names)
        self.image_shape = tuple(image_shape)
        self.augmentation = augmentation
        self.skipped_files = tuple(skipped_files)
        self._train, self._val, self._test = train, val, test
        self._augment_fn, self._eval_fn = augment_fn, eval_fn

    num_train = property(lambda self: len(self._train))
    num_val = property(lambda self: 0 if self._val is None else len(self._val))
    num_test = property(lambda self: len(self._test))

    def __repr__(self):
        return (f"Dataset(name={self.name!r}, num_classes={self.num_classes}, "
                f"image_shape={self.image_shape}, num_train={self.num_train}, "
                f"num_val={self.num_val}, num_test={self.num_test})")

    def train(self, batch_size, *, shuffle=True, augment=True, seed=0, drop_remainder=False,
              repeat=False):
        """The training split as batches.

        Args:
            batch_size: int, at most `num_train`.
            shuffle: bool, reshuffle (seeded) every pass over the data.
            augment: bool, apply `augmentation`; otherwise images are prepared
                as for evaluation.
            seed: int, seeds the shuffling and the augmentation, so two
                pipelines with the same seed yield the same batches.
            drop_remainder: bool, drop the last incomplete batch.
            repeat: bool, an endless stream (reshuffled every pass) for
                `fit(..., steps_per_epoch=...)`.

        A `folder` file that passed the up-front check but still fails to
        decode is dropped from the stream, so training does not stop mid-epoch.

        Returns:
            A `tf.data.Dataset` of `(float32 images, int32 labels)` batches.

        Raises:
            ValueError: `batch_size` is not a positive int or exceeds
                `num_train`. Raised even without `drop_remainder`: a batch
                larger than the training set is always a configuration error,
                and with `drop_remainder` it would yield no batch at all.
        """
        _check_count("batch_size", batch_size)
        if batch_size > self.num_train:
            held_out = f" after holding out {self.num_val} for val" if self.num_val else ""
            raise ValueError(
                f"batch_size={batch_size} is larger than the {self.name} training split "
                f"({self.num_train} images{held_out}); use batch_size <= {self.num_train}.")
        split = self._train
        indices = tf.data.Dataset.range(len(split))
        if shuffle:
            indices = indices.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
        if repeat:
            indices = indices.repeat()
        labels = tf.constant(split.labels)
        if augment:
            # Stateless ops with a per-element seed drawn from a seeded stream:
            # reproducible whatever the parallelism, different every epoch.
            random = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
            base_seed = tf.constant(seed, tf.int64)

            def prepare(i, r):
                image = self._augment_fn(split.load(i), tf.stack([base_seed, r]))
                return self._finish(image), tf.gather(labels, i)

            elements = tf.data.Dataset.zip((indices, random))
        else:
            def prepare(i):
                return self._finish(self._eval_fn(split.load(i))), tf.gather(labels, i)

            elements = indices
        elements = elements.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        if split.paths is not None:
            # Files passed the up-front check; one that still fails to decode
            # (e.g. a JPEG truncated past its header) is dropped, not fatal.
            elements = elements.ignore_errors(log_warning=True)
        return elements.batch(batch_size, drop_remainder=drop_remainder).prefetch(
            tf.data.AUTOTUNE)

    def test(self, batch_size):
        """The official test split as batches, in a fixed order, not augmented.

        Args:
            batch_size: int; the last batch may be smaller.

        Returns:
            A `tf.data.Dataset` with the element spec of `train()`.
        """
        return self._eval_batches(self._test, batch_size)

    def val(self, batch_size):
        """The part of the training split held out by `val_split`, like `test()`.

        Args:
            batch_size: int; the last batch may be smaller.

        Returns:
            A `tf.data.Dataset` with the element spec of `train()`.

        Raises:
            ValueError: the dataset was loaded without `val_split`.
        """
        if self._val is None:
            raise ValueError(
                f"The {self.name} dataset has no validation split: load it with "
                f"load_dataset({self.name!r}, val_split=...), a fraction (0.1) or a count "
                f"(5000) of training images to hold out.")
        return self._eval_batches(self._val, batch_size)

    def calibration_images(self, n, seed=0):
        """`n` distinct training images, not augmented, e.g. for int8 calibration.

        Args:
            n: int, at most `num_train`.
            seed: int, which images are drawn.

        Returns:
            np.ndarray float32 `(n, H, W, 3)` in [0, 255].

        Raises:
            ValueError: `n` is not a positive int or exceeds `num_train`.
        """
        _check_count("n", n)
        if n > self.num_train:
            raise ValueError(f"Cannot draw n={n} calibration images from the {self.name} "
                             f"training split of {self.num_train} images; use n <= "
                             f"{self.num_train}.")
        indices = np.random.default_rng(seed).choice(self.num_train, size=n, replace=False)
        images, _ = self._arrays(self._train.subset(indices))
        return images.astype(np.float32)

    def test_arrays(self):
        """The whole test split in memory, as deployed models receive it.

        A `folder` dataset decodes and resizes its whole `val` tree here: meant
        for small sets (50,000 ImageNet images at 224x224 take 7.5 GB).

        Returns:
            (uint8 images `(num_test, H, W, 3)`, int32 labels `(num_test,)`),
            the pixels `test()` yields, in the same order.
        """
        return self._arrays(self._test)

    def _eval_batches(self, split, batch_size):
        _check_count("batch_size", batch_size)
        labels = tf.constant(split.labels)

        def prepare(i):
            return self._finish(self._eval_fn(split.load(i))), tf.gather(labels, i)

        return (tf.data.Dataset.range(len(split))
                .map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
                .batch(batch_size).prefetch(tf.data.AUTOTUNE))

    def _arrays(self, split):
        if split.paths is None:
            return split.images.copy(), split.labels.copy()
        images = [x for x, _ in self._eval_batches(split, 64).as_numpy_iterator()]
        images = (np.concatenate(images) if images
                  else np.zeros((0, *self.image_shape), np.float32))
        return images.astype(np.uint8), split.labels.copy()

    def _finish(self, image):
        image = tf.cast(image, tf.float32)
        image.set_shape(self.image_shape)
        return image


def _check_count(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")


# --- augmentation: tensor in, tensor out; `seed` is a stateless seed of shape (2,) ---

def _pad_crop(image, seed, *, pad):
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    return tf.image.stateless_random_crop(padded, tf.shape(image), seed=seed)


def _augment_digits(image, seed):
    return _pad_crop(image, seed, pad=_DIGITS_SHIFT)


def _augment_cifar(image, seed):
    crop_seed, flip_seed = tf.unstack(tf.random.split(seed, 2))
    image = _pad_crop(image, crop_seed, pad=_CIFAR_PAD)
    return tf.image.stateless_random_flip_left_right(image, flip_seed)


def _random_resized_crop_flip(image, seed, *, size):
    """Inception-style crop (arXiv 1409.4842), as torchvision's RandomResizedCrop."""
    crop_seed, flip_seed = tf.unstack(tf.random.split(seed, 2))
    # min_object_covered=0: the whole image is the "object", so any crop of
    # 8%-100% of it qualifies; after 10 failed attempts the whole image is used.
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=crop_seed, min_object_covered=0.0, aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.08, 1.0), max_attempts=10)
    image = tf.slice(image, begin, crop_size)
    image = tf.image.resize(image, (size, size), method="bilinear", antialias=True)
    return tf.image.stateless_random_flip_left_right(image, flip_seed)


def _resize_center_crop(image, *, size):
    resize_to = round(size * _RESIZE_RATIO)
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = resize_to / tf.reduce_min(hw)
    # max() keeps the shorter side at exactly resize_to despite float rounding.
    new_hw = tf.maximum(tf.cast(tf.round(hw * scale), tf.int32), resize_to)
    image = tf.image.resize(image, new_hw, method="bilinear", antialias=True)
    top, left = tf.unstack((new_hw - size) // 2)
    image = tf.slice(image, [top, left, 0], [size, size, 3])
    # Whole pixel values, so a uint8 model input sees exactly what the float
    # model saw; the clip guards against float error just outside [0, 255].
    return tf.clip_by_value(tf.round(image), 0.0, 255.0)


# --- digits ---

def _load_digits(*, data_dir, image_size):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if data_dir is not None:
        raise ValueError("The digits dataset is embedded in scikit-learn and takes no "
                         f"data_dir (got {data_dir!r}); did you mean dataset='folder'?")
    _check_native_size("digits", image_size)
    digits = load_digits()
    images = digits.images[..., None].astype(np.float32) * (255.0 / 16.0)
    images = tf.image.resize(images, (32, 32), method="bilinear").numpy()
    images = np.repeat(np.clip(np.round(images), 0, 255).astype(np.uint8), 3, axis=-1)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.2, stratify=digits.target, random_state=0)
    return dict(class_names=[str(c) for c in digits.target_names], image_shape=(32, 32, 3),
                augmentation=_AUGMENTATION["digits"],
                train=_Split(y_train, images=x_train), test=_Split(y_test, images=x_test),
                augment_fn=_augment_digits, eval_fn=tf.identity)


def _check_native_size(name, image_size):
    if image_size not in (None, 32):
        raise ValueError(f"The {name} images are 32x32; image_size={image_size!r} applies to "
                         "the 'folder' dataset only. Leave it unset for this dataset.")


# --- CIFAR ---

@dataclasses.dataclass(frozen=True)
class _CifarFormat:
    title: str
    archive: str
    folder: str
    train: tuple
    test: tuple
    meta: str
    label_key: bytes
    names_key: bytes


_CIFAR = {
    "cifar10": _CifarFormat("CIFAR-10", "cifar-10-python.tar.gz", "cifar-10-batches-py",
                            tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
                            "batches.meta", b"labels", b"label_names"),
    "cifar100": _CifarFormat("CIFAR-100", "cifar-100-python.tar.gz", "cifar-100-python",
                             ("train",), ("test",), "meta", b"fine_labels",
                             b"fine_label_names"),
}


class _CifarUnpickler(pickle.Unpickler):
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


def keras_datasets_dir():
    """The folder where Keras caches datasets: `$KERAS_HOME/datasets`, default `~/.keras`."""
    return os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")),
                        "datasets")


def _find_cifar(fmt, data_dir):
    """Path of the archive or extracted folder (None if absent), and the place searched."""
    root = os.fspath(data_dir) if data_dir is not None else keras_datasets_dir()
    if os.path.isfile(root):
        return root, root
    candidates = [
        root if os.path.isfile(os.path.join(root, fmt.meta)) else None,  # the extracted folder
        os.path.join(root, fmt.folder),
        os.path.join(root, f"{fmt.folder}-target", fmt.folder),  # Keras 3 cache
        os.path.join(root, fmt.archive),
        os.path.join(root, f"{fmt.folder}.tar.gz"),  # tf_keras cache
    ]
    found = [path for path in candidates if path is not None and os.path.exists(path)]
    return (found[0] if found else None), root


def _read_cifar_members(path, names, title):
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
        entry = _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise ValueError(f"{name} is not a {title} batch file ({e}).") from None
    if not isinstance(entry, dict):
        raise ValueError(f"{name} is not a {title} batch file (no dict inside).")
    return entry


def _cifar_batches(files, names, fmt):
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


def _load_cifar(name, *, data_dir, image_size):
    fmt = _CIFAR[name]
    _check_native_size(name, image_size)
    path, searched = _find_cifar(fmt, data_dir)
    if path is None:
        raise FileNotFoundError(
            f"{fmt.title} not found: looked for {fmt.archive} or its extracted folder "
            f"{fmt.folder}/ in {searched}. This code downloads nothing: get "
            f"{CIFAR_URL}{fmt.archive} and either pass data_dir=<the file or its folder> or "
            f"put it in {keras_datasets_dir()} (the Keras cache; set KERAS_HOME to move it).")
    files = _read_cifar_members(path, fmt.train + fmt.test + (fmt.meta,), fmt.title)
    meta = _unpickle(files[fmt.meta], fmt.meta, fmt.title)
    if fmt.names_key not in meta:
        raise ValueError(f"{fmt.meta} in {path} lacks {fmt.names_key!r}; download the "
                         f"archive again.")
    class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[fmt.names_key]]
    x_train, y_train = _cifar_batches(files, fmt.train, fmt)
    x_test, y_test = _cifar_batches(files, fmt.test, fmt)
    for labels in (y_train, y_test):
        if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise ValueError(f"{path} has labels outside 0..{len(class_names) - 1}; "
                             f"download the archive again.")
    return dict(class_names=class_names, image_shape=(32, 32, 3),
                augmentation=_AUGMENTATION["cifar"],
                train=_Split(y_train, images=x_train), test=_Split(y_test, images=x_test),
                augment_fn=_augment_cifar, eval_fn=tf.identity)


# --- folder ---

def _visible_entries(path):
    return sorted(e for e in os.listdir(path) if not e.startswith("."))


def _check_image_file(path):
    """None if TensorFlow can decode `path`, else why not (read headers only)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image_format = image.format
            image.verify()
        if image_format not in DECODABLE_FORMATS:
            return f"{image_format} is not decodable by TensorFlow"
        if image_format in ("JPEG", "MPO"):
            # verify() does not read JPEG scan data; a file cut short lacks
            # the end-of-image marker near its end.
            with open(path, "rb") as f:
                f.seek(max(0, os.path.getsize(path) - 4096))
                if b"\xff\xd9" not in f.read():
                    return "truncated JPEG"
    except Exception as e:  # noqa: BLE001 - any PIL failure means "not an image"; reported.
        return f"not a readable image ({type(e).__name__})"
    return None


def _scan_split(split_dir, class_names):
    """(paths, labels, [(path, reason) skipped]) of the image files under each class."""
    present = [c for c in class_names if os.path.isdir(os.path.join(split_dir, c))]
    files = {}
    for c in present:
        found = []
        for dirpath, dirnames, filenames in os.walk(os.path.join(split_dir, c),
                                                    followlinks=True):
            # Hidden folders and files (.DS_Store, .ipynb_checkpoints) are
            # tool metadata, not data worth a warning.
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            found += [os.path.join(dirpath, f) for f in filenames if not f.startswith(".")]
        files[c] = sorted(found)
    every = [p for c in present for p in files[c]]
    workers = min(32, 4 * (os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        problems = dict(zip(every, pool.map(_check_image_file, every)))
    paths, labels, skipped = [], [], []
    for c in present:
        good = [p for p in files[c] if problems[p] is None]
        bad = [(p, problems[p]) for p in files[c] if problems[p] is not None]
        skipped += bad
        if not good:
            detail = f" ({len(bad)} files, none a decodable image)" if bad else ""
            raise ValueError(
                f"Class folder {os.path.join(split_dir, c)} has no images{detail}. Add images "
                f"({', '.join(DECODABLE_FORMATS)}) or remove the folder.")
        paths += good
        labels += [class_names.index(c)] * len(good)
    return paths, labels, skipped


def _load_folder(*, data_dir, image_size):
    if data_dir is None:
        raise ValueError(f"The folder dataset needs data_dir, a folder laid out as "
                         f"{FOLDER_LAYOUT}.")
    root = os.fspath(data_dir)
    size = 224 if image_size is None else image_size
    _check_count("image_size", size)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"data_dir {root} does not exist or is not a folder; "
                                f"expected {FOLDER_LAYOUT}.")
    for split in ("train", "val"):
        if not os.path.isdir(os.path.join(root, split)):
            raise FileNotFoundError(f"{os.path.join(root, split)} does not exist; the folder "
                                    f"dataset expects {FOLDER_LAYOUT}.")
    train_dir, val_dir = os.path.join(root, "train"), os.path.join(root, "val")
    class_names = [e for e in _visible_entries(train_dir)
                   if os.path.isdir(os.path.join(train_dir, e))]
    if not class_names:
        raise ValueError(f"{train_dir} has no class folders; expected {FOLDER_LAYOUT}.")
    unknown = [e for e in _visible_entries(val_dir)
               if os.path.isdir(os.path.join(val_dir, e)) and e not in class_names]
    if unknown:
        raise ValueError(f"{val_dir} has class folders that {train_dir} lacks: "
                         f"{', '.join(unknown)}. Both must use the same class names.")
    train_paths, train_labels, skipped = _scan_split(train_dir, class_names)
    val_paths, val_labels, val_skipped = _scan_split(val_dir, class_names)
    skipped += val_skipped
    if not val_paths:
        raise ValueError(f"{val_dir} has no class folders with images; expected "
                         f"{FOLDER_LAYOUT}.")
    if skipped:
        total = len(train_paths) + len(val_paths) + len(skipped)
        first = "; ".join(f"{os.path.relpath(p, root)} ({why})"
                          for p, why in skipped[:_LOG_FIRST_SKIPPED])
        more = f"; and {len(skipped) - _LOG_FIRST_SKIPPED} more" if len(
            skipped) > _LOG_FIRST_SKIPPED else ""
        logger.warning("folder dataset %s: skipped %d of %d files that are not decodable "
                       "images: %s%s", root, len(skipped), total, first, more)
    return dict(class_names=class_names, image_shape=(size, size, 3),
                augmentation=_AUGMENTATION["folder"],
                train=_Split(train_labels, paths=train_paths),
                test=_Split(val_labels, paths=val_paths),
                augment_fn=lambda image, seed: _random_resized_crop_flip(image, seed, size=size),
                eval_fn=lambda image: _resize_center_crop(image, size=size),
                skipped_files=[p for p, _ in skipped])


_LOADERS = {
    "digits": _load_digits,
    "cifar10": lambda **kwargs: _load_cifar("cifar10", **kwargs),
    "cifar100": lambda **kwargs: _load_cifar("cifar100", **kwargs),
    "folder": _load_folder,
}


def _hold_out(train, val_split, seed, name):
    """(train, val) splits of `train`, stratified by label."""
    from sklearn.model_selection import train_test_split

    if isinstance(val_split, float) and val_split >= 1 and val_split.is_integer():
        val_split = int(val_split)  # a count read from a config file or command line as 5000.0
    valid = (isinstance(val_split, float) and 0.0 < val_split < 1.0) or (
        isinstance(val_split, (int, np.integer)) and not isinstance(val_split, bool)
        and 0 < val_split < len(train))
    if not valid:
        raise ValueError(f"val_split={val_split!r} is not valid for the {name} training split "
                         f"of {len(train)} images: use 0 (none), a fraction in (0, 1) or a "
                         f"count in 1..{len(train) - 1}.")
    try:
        kept, held_out = train_test_split(np.arange(len(train)), test_size=val_split,
                                          stratify=train.labels, random_state=seed)
    except ValueError as e:
        raise ValueError(f"val_split={val_split!r} cannot hold out every class of the {name} "
                         f"training split ({e}); use a larger val_split, or 0.") from None
    return train.subset(np.sort(kept)), train.subset(np.sort(held_out))


def load_dataset(name, *, data_dir=None, image_size=None, val_split=0.0, seed=0):
    """Loads a dataset by name (see the module docstring for each protocol).

    Args:
        name: str, one of `DATASETS`.
        data_dir: for `cifar10`/`cifar100`, the archive, a folder holding it
            or its extracted folder, or the extracted folder itself; default
            the Keras cache. For `folder`, the root of the train/val tree.
            `digits` takes none.
        image_size: int, side of the square images of a `folder` dataset
            (default 224). The other datasets are 32x32 and take None or 32.
        val_split: 0 (no validation split), a float fraction in (0, 1) or an
            int count of training images to hold out, stratified by class,
            as `Dataset.val()`. The paper's CIFAR protocol is 5000 (45k/5k).
        seed: int, seeds which images `val_split` holds out.

    Returns:
        A `Dataset`.

    Raises:
        ValueError: an unknown name or invalid option (the message lists the
            valid values), or malformed data.
        FileNotFoundError: the data is not where it was looked for; the
            message says where it was looked for and where to put it.

    Example:

    >>> ds = load_dataset("digits")
    >>> (ds.num_train, ds.num_test, ds.image_shape)
    (1437, 360, (32, 32, 3))
    """
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; valid: {', '.join(DATASETS)}.")
    parts = _LOADERS[name](data_dir=data_dir, image_size=image_size)
    if val_split:
        parts["train"], parts["val"] = _hold_out(parts["train"], val_split, seed, name)
    return Dataset(name=name, **parts)
