"""The datasets the nets train and are evaluated on, by name, and `load_dataset`.

    ds = load_dataset("digits")  # or "cifar10", "fashion_mnist", "folder" + data_dir, ...
    model.fit(ds.train(128, repeat=True), steps_per_epoch=ds.num_train // 128,
              epochs=30, validation_data=ds.test(256))

Each name is read by one source module whose docstring gives its protocol:
`datasets.digits` (the default; offline), `datasets.cifar` (`cifar10`,
`cifar100`), `datasets.idx` (`mnist`, `fashion_mnist`), `datasets.folder`
(an ImageNet-style tree) and `datasets.tfds` (`tfds:NAME[:CONFIG]`, TensorFlow
Datasets). `val_split` holds out a stratified part of the training split,
served by `Dataset.val()` (a tfds dataset with a validation split serves that
instead); `test()` is always the official test split.
"""

from datasets import cifar, digits, folder, idx, tfds
from datasets.augmentation import AUGMENTATIONS
from datasets.input_pipeline import Dataset, hold_out

# A source is a module with `load(name, *, data_dir, image_size, augmentation)`
# returning the keyword arguments of `Dataset`; a new one is one more row.
_SOURCES = {"digits": digits, "cifar10": cifar, "cifar100": cifar, "mnist": idx,
            "fashion_mnist": idx, "folder": folder}
DATASETS = tuple(_SOURCES)
# Besides `DATASETS`: any TensorFlow Datasets name, checked when it is loaded.
TFDS_NAMES = f"{tfds.PREFIX}NAME[:CONFIG] (TensorFlow Datasets)"


def check_dataset_name(name, *, key="dataset") -> None:
    """Checks that `name` is one of `DATASETS` or a well-formed `tfds:NAME[:CONFIG]`.

    Raises:
        ValueError: neither; the message lists the valid names.
    """
    if tfds.is_tfds(name):
        tfds.builder_name(name)
    elif name not in DATASETS:
        raise ValueError(f"{key}={name!r} is not valid. Valid values: {', '.join(DATASETS)}, "
                         f"or {TFDS_NAMES}.")


def load_dataset(name, *, data_dir=None, image_size=None, augmentation="auto", val_split=0,
                 seed=0):
    """Loads a dataset by name (see its source module for the protocol).

    Args:
        name: str, one of `DATASETS`, or `tfds:NAME[:CONFIG]`.
        data_dir: for `cifar10`/`cifar100`, the archive, a folder holding it
            or its extracted folder, or the extracted folder itself; default
            the Keras cache. For `mnist`/`fashion_mnist`, the folder of the
            four IDX files (or, for `mnist`, Keras's `mnist.npz` or its
            folder); default the Keras cache, then for `fashion_mnist`
            `/usr/share/datasets/fashion-mnist`, then downloaded into the
            Keras cache (also CIFAR's; nothing is downloaded into a data_dir
            given). For `folder`, the root of the train/val tree; for
            `tfds:...`, tfds's data dir (default its own). `digits` takes none.
        image_size: int, side of the square images of a `folder` or `tfds:`
            dataset (default 224). The others are 32x32 and take None or 32.
        augmentation: str, one of `AUGMENTATIONS`, the training augmentation:
            `auto` is the dataset's own (the paper's for CIFAR; for `folder`,
            `inception` from 128 pixels up, `pad_crop_flip` below);
            `inception` (a random-resized crop and flip, `folder` only),
            `pad_crop_flip`/`pad_crop` (a shift by at most `image_size / 8`
            pixels, zero-filled, with/without a horizontal flip) or `none`.
            `Dataset.augmentation` says in words what is applied.
        val_split: 0 (no validation split), a float fraction in (0, 1) or an
            int count of training images to hold out, stratified by class,
            as `Dataset.val()`. The paper's CIFAR protocol is 5000 (45k/5k);
            a count must be an int: 5000.0 is rejected, not rounded. A tfds
            dataset with a validation split takes 0.
        seed: int, seeds which images `val_split` holds out.

    Returns:
        A `Dataset`.

    Raises:
        ValueError: an unknown name or invalid option (the message lists the
            valid values), or malformed data.
        FileNotFoundError: the data is not where it was looked for (and
            downloads are off); the message says where it was looked for and
            where to put it.
        resnet_keras.fetch.DownloadError: a download failed or its hash did not match.
        ImportError: a `tfds:` dataset without tensorflow-datasets installed.

    Example:

    >>> ds = load_dataset("digits")
    >>> (ds.num_train, ds.num_test, ds.image_shape)
    (1437, 360, (32, 32, 3))
    """
    if name not in DATASETS and not tfds.is_tfds(name):
        raise ValueError(f"Unknown dataset {name!r}; valid: {', '.join(DATASETS)}, or "
                         f"{TFDS_NAMES}.")
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"Unknown augmentation {augmentation!r}; valid: "
                         f"{', '.join(AUGMENTATIONS)}.")
    source = tfds if tfds.is_tfds(name) else _SOURCES[name]
    parts = source.load(name, data_dir=data_dir, image_size=image_size,
                        augmentation=augmentation)
    if val_split and "val" in parts:
        raise ValueError(f"{name} has its own validation split, which Dataset.val() serves; "
                         f"leave val_split at 0 (got {val_split!r}).")
    if val_split:
        parts["train"], parts["val"] = hold_out(parts["train"], val_split, seed=seed,
                                                name=name)
    return Dataset(name=name, **parts)
