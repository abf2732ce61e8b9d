"""The datasets the nets train and are evaluated on, by name, and `load_dataset`.

    ds = load_dataset("digits")  # or "cifar10", "fashion_mnist", "folder" + data_dir, ...
    model.fit(ds.train(128, repeat=True), steps_per_epoch=ds.num_train // 128,
              epochs=30, validation_data=ds.test(256))

Each name is read by one source module whose docstring gives its protocol:
`datasets.digits` (the default; offline), `datasets.cifar` (`cifar10`,
`cifar100`), `datasets.idx` (`mnist`, `fashion_mnist`) and `datasets.folder`
(an ImageNet-style tree). `val_split` (all datasets) holds out a stratified
part of the training split, served by `Dataset.val()`; `test()` is always the
official test split.
"""

import numpy as np

from datasets import cifar, digits, folder, idx
from datasets.pipeline import AUGMENTATIONS, Dataset

# A source is a module with `load(name, *, data_dir, image_size, augmentation)`
# returning the keyword arguments of `Dataset`; a new one is one more row.
_SOURCES = {"digits": digits, "cifar10": cifar, "cifar100": cifar, "mnist": idx,
            "fashion_mnist": idx, "folder": folder}
DATASETS = tuple(_SOURCES)


def load_dataset(name, *, data_dir=None, image_size=None, augmentation="auto", val_split=0,
                 seed=0):
    """Loads a dataset by name (see its source module for the protocol).

    Args:
        name: str, one of `DATASETS`.
        data_dir: for `cifar10`/`cifar100`, the archive, a folder holding it
            or its extracted folder, or the extracted folder itself; default
            the Keras cache. For `mnist`/`fashion_mnist`, the folder of the
            four IDX files (or, for `mnist`, Keras's `mnist.npz` or its
            folder); default the Keras cache, then for `fashion_mnist`
            `/usr/share/datasets/fashion-mnist`. For `folder`, the root of the
            train/val tree. `digits` takes none.
        image_size: int, side of the square images of a `folder` dataset
            (default 224). The other datasets are 32x32 and take None or 32.
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
            a count must be an int: 5000.0 is rejected, not rounded.
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
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"Unknown augmentation {augmentation!r}; valid: "
                         f"{', '.join(AUGMENTATIONS)}.")
    parts = _SOURCES[name].load(name, data_dir=data_dir, image_size=image_size,
                                augmentation=augmentation)
    if val_split:
        parts["train"], parts["val"] = _hold_out(parts["train"], val_split, seed, name)
    return Dataset(name=name, **parts)


def _hold_out(train, val_split, seed, name):
    """(train, val) splits of `train`, stratified by label."""
    from sklearn.model_selection import train_test_split

    if isinstance(val_split, float) and val_split >= 1:
        as_int = f" (val_split={int(val_split)})" if val_split.is_integer() else ""
        raise ValueError(
            f"val_split={val_split!r} is a float, so it is read as a fraction of the {name} "
            f"training split and must be in (0, 1); to hold out a number of images, pass it "
            f"as an int{as_int}.")
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
