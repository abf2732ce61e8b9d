"""Seeded tf.data pipelines over a dataset's splits, and what its sources share.

A source module (`datasets.digits`, `datasets.cifar`, `datasets.folder`) reads
its images into one `Split` per part; `Dataset` serves them as pipelines of
float32 RGB pixels in [0, 255] (the models normalize inside) and int32 labels,
augmented as in He et al. 2015 (arXiv 1512.03385), sec. 4.2 for CIFAR.
"""

import os

import numpy as np

from resnet_keras.backend import tf


class Split:
    """Labelled examples: in-memory uint8 images or paths of image files.

    Args:
        labels: int labels, one an example.
        images: uint8 array `(N, H, W, 3)`, or None when `paths` is given.
        paths: list of str, image files of any size decoded when loaded, or
            None when `images` is given.
    """

    def __init__(self, labels, *, images=None, paths=None):
        self.labels = np.asarray(labels, dtype=np.int32)
        self.images = images
        self.paths = paths
        self._tensors = None

    def __len__(self):
        return len(self.labels)

    def subset(self, indices):
        """The examples at `indices` (an int array), as a new `Split`."""
        return Split(self.labels[indices],
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

    Built by `load_dataset` from the keyword arguments a source's `load`
    returns. Pipelines yield `(images, labels)` batches: float32
    `(batch, H, W, 3)` RGB in [0, 255] and int32 `(batch,)`. A source's
    `augment_fn(image, seed)` and `eval_fn(image)` take one uint8 image
    tensor `(h, w, 3)` (any size for files) and, for augmentation, a stateless
    seed `(2,)`; they return it as `image_shape`.

    Attributes:
        name: str, one of `datasets.DATASETS`.
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
        check_count("batch_size", batch_size)
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
        check_count("n", n)
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
        check_count("batch_size", batch_size)
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


def check_count(name, value):
    """Checks that the argument `name` is a positive int.

    Raises:
        ValueError: `value` is not a positive int (a bool is not one).
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")


def check_native_size(name, image_size):
    """Checks that `image_size` leaves the 32x32 images of dataset `name` as they are.

    Raises:
        ValueError: `image_size` is neither None nor 32.
    """
    if image_size not in (None, 32):
        raise ValueError(f"The {name} images are 32x32; image_size={image_size!r} applies to "
                         "the 'folder' dataset only. Leave it unset for this dataset.")


def keras_datasets_dir():
    """The folder where Keras caches datasets: `$KERAS_HOME/datasets`, default `~/.keras`."""
    return os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")),
                        "datasets")


def pad_crop(image, seed, *, pad):
    """Zero-pads `image` by `pad` pixels a side and crops it back to its size at random.

    Args:
        image: tensor `(H, W, C)`.
        seed: int tensor `(2,)`, a stateless seed.
        pad: int, the largest shift in pixels.

    Returns:
        A tensor of the shape of `image`.
    """
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    return tf.image.stateless_random_crop(padded, tf.shape(image), seed=seed)
