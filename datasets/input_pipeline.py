"""Seeded tf.data pipelines over a dataset's splits, and what its sources share.

A source module (`datasets.digits`, `datasets.cifar`, `datasets.idx`,
`datasets.folder`) reads its images into one `Split` per part; `Dataset` serves
them as pipelines of float32 RGB pixels in [0, 255] (the models normalize
inside) and int32 labels, augmented as in He et al. 2015 (arXiv 1512.03385),
sec. 4.2 for CIFAR.
"""

import numpy as np

from resnet_keras.backend import keras_cache_dir, tf

# A split of image files whose decoded evaluation-size uint8 images take at
# most this is decoded once and kept in memory; a larger one is decoded every
# epoch (50,000 ImageNet images at 224x224 take 7.5 GB).
DECODED_CACHE_BYTES = 2 * 2**30


class Split:
    """Labelled examples: in-memory uint8 images, paths of image files, or encoded images.

    Give exactly one of `images`, `paths` and `encoded`.

    Args:
        labels: int labels, one an example.
        images: uint8 array `(N, H, W, 3)`.
        paths: list of str, image files of any size decoded when loaded.
        encoded: list of bytes, image files' contents (JPEG, PNG, ...) of
            any size, decoded when loaded (a TensorFlow Datasets split).
    """

    def __init__(self, labels, *, images=None, paths=None, encoded=None):
        self.labels = np.asarray(labels, dtype=np.int32)
        self.images = images
        self.paths = paths
        self.encoded = encoded
        self._tensors = None

    @property
    def decoded(self) -> bool:
        """Whether the images are in memory as arrays (else files or bytes decoded on load)."""
        return self.images is not None

    def __len__(self):
        return len(self.labels)

    def subset(self, indices):
        """The examples at `indices` (an int array), as a new `Split`."""
        return Split(self.labels[indices],
                     images=None if self.images is None else self.images[indices],
                     paths=None if self.paths is None else [self.paths[i] for i in indices],
                     encoded=None if self.encoded is None else [self.encoded[i]
                                                                for i in indices])

    def load(self, index):
        """uint8 image `index` as a tensor (decoded from its file, any size)."""
        if self._tensors is None:
            # Converted once, eagerly even when first called while a pipeline
            # is traced, so every pipeline captures this one tensor instead of
            # embedding another copy of the images in its graph.
            with tf.init_scope():
                self._tensors = tf.constant(next(
                    source for source in (self.images, self.paths, self.encoded)
                    if source is not None))
        if self.decoded:
            return tf.gather(self._tensors, index)
        data = tf.gather(self._tensors, index)
        if self.paths is not None:
            data = tf.io.read_file(data)
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        return image


class Dataset:
    """A dataset split into train (and optionally val) and test, as tf.data pipelines.

    Built by `load_dataset` from the keyword arguments a source's `load`
    returns. Pipelines yield `(images, labels)` batches: float32
    `(batch, H, W, 3)` RGB in [0, 255] and int32 `(batch,)`. A source's
    `eval_fn(image)` takes one uint8 image tensor `(h, w, 3)` (any size for
    files) and returns it as `image_shape`, whole pixel values in [0, 255].
    `augment_fn(image, seed)` takes the same image, or with
    `augment_after_eval` the output of `eval_fn`, and a stateless seed `(2,)`,
    and returns it as `image_shape`.

    The evaluation images of a split of files are decoded once and kept in
    memory (uint8) when they take at most `DECODED_CACHE_BYTES`, for
    evaluation and for an augmentation `augment_after_eval`; otherwise they
    are decoded again every epoch.

    Attributes:
        name: str, one of `datasets.DATASETS`.
        class_names: tuple of str, index = label.
        num_classes: int.
        image_shape: (H, W, 3) of every image the pipelines yield.
        num_train: int, training images (after holding out `val_split`).
        num_val: int, held-out validation images (0 without `val_split`).
        num_test: int, test images.
        augmentation: str, the training augmentation applied, in words.
        skipped_files: tuple of str, files of a `folder` dataset left out
            because they are not decodable images.
    """

    def __init__(self, *, name, class_names, image_shape, augmentation, train, test,
                 val=None, augment_fn, eval_fn, augment_after_eval=False, skipped_files=()):
        self.name = name
        self.class_names = tuple(class_names)
        self.num_classes = len(self.class_names)
        self.image_shape = tuple(image_shape)
        self.augmentation = augmentation
        self.skipped_files = tuple(skipped_files)
        self._train, self._val, self._test = train, val, test
        self._augment_fn, self._eval_fn = augment_fn, eval_fn
        self._augment_after_eval = augment_after_eval

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
        Files are decoded once if their images fit `DECODED_CACHE_BYTES` (see
        the class docstring).

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
        examples, read = self._examples(split,
                                        evaluated=not augment or self._augment_after_eval)
        if shuffle:
            examples = examples.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
        if repeat:
            examples = examples.repeat()
        if augment:
            # Stateless ops with a per-element seed drawn from a seeded stream:
            # reproducible whatever the parallelism, different every epoch.
            random = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
            base_seed = tf.constant(seed, tf.int64)

            def prepare(example, r):
                source, label = example
                image = self._augment_fn(read(source), tf.stack([base_seed, r]))
                return self._finish(image), label

            examples = tf.data.Dataset.zip((examples, random))
        else:
            def prepare(source, label):
                return self._finish(read(source)), label

        examples = _drop_undecodable(
            examples.map(prepare, num_parallel_calls=tf.data.AUTOTUNE), split)
        return _served(examples.batch(batch_size, drop_remainder=drop_remainder))

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
        examples, read = self._examples(split, evaluated=True)
        examples = _drop_undecodable(
            examples.map(lambda source, label: (self._finish(read(source)), label),
                         num_parallel_calls=tf.data.AUTOTUNE), split)
        return _served(examples.batch(batch_size))

    def _examples(self, split, *, evaluated):
        """`(source, label)` pairs of `split` in order, and `read(source)` -> its image.

        The image is loaded, and prepared by `eval_fn` if `evaluated`. Evaluated
        images of files that fit `DECODED_CACHE_BYTES` are decoded on the first
        pass and cached (uint8) for the next ones, which then read no file.
        """
        labels = tf.constant(split.labels)
        indices = tf.data.Dataset.range(len(split))
        size = len(split) * int(np.prod(self.image_shape))
        if split.decoded or not evaluated or size > DECODED_CACHE_BYTES:
            load = (lambda i: self._eval_fn(split.load(i))) if evaluated else split.load
            return indices.map(lambda i: (i, tf.gather(labels, i))), load

        def decode(i):
            # eval_fn yields whole pixel values: uint8 keeps them exactly.
            return tf.cast(self._eval_fn(split.load(i)), tf.uint8), tf.gather(labels, i)

        decoded = _drop_undecodable(indices.map(decode, num_parallel_calls=tf.data.AUTOTUNE),
                                    split)
        return decoded.cache(), tf.identity

    def _arrays(self, split):
        if split.decoded:
            return split.images.copy(), split.labels.copy()
        images = [x for x, _ in self._eval_batches(split, 64).as_numpy_iterator()]
        images = (np.concatenate(images) if images
                  else np.zeros((0, *self.image_shape), np.float32))
        return images.astype(np.uint8), split.labels.copy()

    def _finish(self, image):
        image = tf.cast(image, tf.float32)
        image.set_shape(self.image_shape)
        return image


def without_autotune(dataset):
    """`dataset` without tf.data's autotuning thread, whose sleep can stall the end of a pass.

    Every tf.data iterator, with or without `AUTOTUNE` in its pipeline, starts
    a thread that retunes it after 10 ms, 20 ms, 40 ms, ... up to 60 s
    (`Model::OptimizeLoop`, tensorflow/core/framework/model.cc). Destroying
    the iterator cancels that thread and joins it, but the cancellation wakes
    the thread before it reads as cancelled (tsl's `CancellationManager`
    sets `is_cancelled_` only after running its callbacks), so the thread
    can sleep out the rest of its period: up to as long as the iterator had
    lived. Issue 37 measured 10.23 s epochs (10 ms x (2^10 - 1)) and a train
    stage 42 s longer than its epochs. Every pipeline of the project passes
    through here, so no pass ends in that sleep.

    Without the thread, a map with `num_parallel_calls=AUTOTUNE` runs
    min(16, TensorFlow's inter-op threads) calls at once, and an `AUTOTUNE`
    prefetch grows its buffer itself while its consumer waits; the loaders
    keep their throughput (benchmarks/teardown.py measures both).

    Args:
        dataset: a `tf.data.Dataset`.

    Returns:
        The same pipeline with `tf.data.Options().autotune.enabled = False`.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def array_batches(*arrays, batch_size):
    """In-memory arrays as a pipeline of batches in order, e.g. for `model.predict`.

    What `model.predict(images, batch_size=...)` would build itself, but
    without the autotuning thread that `without_autotune` explains.

    Args:
        *arrays: arrays of the same length (images; images and labels).
        batch_size: int; the last batch may be smaller.

    Returns:
        A `tf.data.Dataset` of batches: one tensor per batch for one array,
        a tuple for several.

    Raises:
        ValueError: `batch_size` is not a positive int.
    """
    check_count("batch_size", batch_size)
    examples = tf.data.Dataset.from_tensor_slices(arrays[0] if len(arrays) == 1 else arrays)
    return _served(examples.batch(batch_size))


def _served(batches):
    return without_autotune(batches.prefetch(tf.data.AUTOTUNE))


def _drop_undecodable(examples, split):
    # Files passed the up-front check; one that still fails to decode (e.g. a
    # JPEG truncated past its header) is dropped, not fatal.
    return examples if split.decoded else examples.ignore_errors(log_warning=True)


def check_count(name, value):
    """Checks that the argument `name` is a positive int.

    Raises:
        ValueError: `value` is not a positive int (a bool is not one).
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")


def hold_out(train, size, *, seed, name, key="val_split"):
    """(kept, held out) parts of a `Split`, stratified by label, each in its original order.

    Args:
        train: the `Split` to divide.
        size: a float fraction in (0, 1) or an int count to hold out (an
            int: 5000.0 is refused, not rounded).
        seed: int, which examples are held out.
        name: str, the dataset, for messages.
        key: str, the setting `size` comes from, for messages.

    Raises:
        ValueError: `size` is not valid for `train`, or cannot hold out every
            class; the message names `key`.
    """
    from sklearn.model_selection import train_test_split

    if isinstance(size, float) and size >= 1:
        as_int = f" ({key}={int(size)})" if size.is_integer() else ""
        raise ValueError(
            f"{key}={size!r} is a float, so it is read as a fraction of the {name} "
            f"training split and must be in (0, 1); to hold out a number of images, pass it "
            f"as an int{as_int}.")
    valid = (isinstance(size, float) and 0.0 < size < 1.0) or (
        isinstance(size, (int, np.integer)) and not isinstance(size, bool)
        and 0 < size < len(train))
    if not valid:
        raise ValueError(f"{key}={size!r} is not valid for the {name} training split "
                         f"of {len(train)} images: use 0 (none), a fraction in (0, 1) or a "
                         f"count in 1..{len(train) - 1}.")
    try:
        kept, held_out = train_test_split(np.arange(len(train)), test_size=size,
                                          stratify=train.labels, random_state=seed)
    except ValueError as e:
        hint = f"; use a larger {key}, or 0" if key == "val_split" else ""
        raise ValueError(f"{key}={size!r} cannot hold out every class of the {name} "
                         f"training split ({e}){hint}.") from None
    return train.subset(np.sort(kept)), train.subset(np.sort(held_out))


def check_pixels(name, images, image_shape):
    """The argument `name` as float32 `(N, *image_shape)`, checked: a batch of raw pixels.

    The one check of the images that calibration, QAT's starting ranges and
    the int8 diagnosis feed a model: pixels in [0, 255] as `Dataset` serves
    them, in the model's input shape.

    Args:
        name: str, the argument's name, for the messages.
        images: array-like, e.g. `Dataset.calibration_images(n)`.
        image_shape: the model's `input_shape[1:]`; a None dimension takes any size.

    Returns:
        np.ndarray float32.

    Raises:
        ValueError: None, the wrong rank or shape, empty, or not finite; the
            message names `name` and gives the expected shape.
    """
    expected = f"(N, {', '.join(str(d) for d in image_shape)})"
    if images is None:
        raise ValueError(f"{name} is missing: it needs raw pixels in [0, 255] of shape "
                         f"{expected}.")
    images = np.asarray(images, dtype=np.float32)
    wrong_shape = images.ndim != len(image_shape) + 1 or any(
        d is not None and d != got for d, got in zip(image_shape, images.shape[1:]))
    if wrong_shape:
        got = (f"rank {images.ndim} array of shape {images.shape}"
               if images.ndim != len(image_shape) + 1 else f"{images.shape}")
        raise ValueError(f"{name} must be raw pixels in [0, 255] matching the model input, "
                         f"of shape {expected}; got {got}.")
    if len(images) == 0:
        raise ValueError(f"{name} is empty; it needs at least one image of shape {expected}.")
    if not np.isfinite(images).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return images


def check_native_size(name, image_size):
    """Checks that `image_size` leaves the 32x32 images of dataset `name` as they are.

    Raises:
        ValueError: `image_size` is neither None nor 32.
    """
    if image_size not in (None, 32):
        raise ValueError(f"The {name} dataset serves 32x32 images; image_size={image_size!r} "
                         "applies to "
                         "the 'folder' dataset only. Leave it unset for this dataset.")


def keras_datasets_dir():
    """The folder where Keras caches datasets: `$KERAS_HOME/datasets`, default `~/.keras`."""
    return keras_cache_dir("datasets")
