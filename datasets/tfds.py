"""TensorFlow Datasets as a source: `tfds:NAME` or `tfds:NAME:CONFIG`, served like a `folder`.

`data_dir` is tfds's data dir (default its own, `$TFDS_DATA_DIR` or
`~/tensorflow_datasets`). A dataset prepared there is read with no network,
whether or not tfds knows its builder (it is then read from its
`dataset_info.json`, as `tfds.builder` does); one not prepared is downloaded and
prepared by tfds, unless downloads are off (`resnet_keras.fetch.offline`).

Splits: `train`; the test split is `test`, else `validation` (as a folder's
`val` is its test split), else `TEST_FRACTION` of `train` held out, stratified,
always the same images; `validation` is the validation split where `test` is
the test split, else `val_split` holds one out. Class names are the label's.
Images are kept encoded in memory (as tfds stores them) and decoded when read,
then prepared as a folder's are: evaluation resize and center crop to
`image_size` (default 224), the folder augmentations (`datasets.folder`).

tensorflow-datasets is imported only here and only when such a dataset is asked
for: it is an optional install (`REQUIREMENT`).
"""

import os

from datasets import folder
from datasets.input_pipeline import Split, check_count, hold_out, without_autotune
from resnet_keras import fetch

PREFIX = "tfds:"
REQUIREMENT = "tensorflow-datasets==4.9.10"
TEST_FRACTION = 0.1
# The encoded images are held in memory; past this on disk a dataset would not
# fit in most machines' memory, and an image folder (read from disk) serves it.
MAX_BYTES = 8 * 2**30
_HOLD_OUT_SEED = 0  # the held-out test split stays the same whatever the training seed


def is_tfds(name) -> bool:
    """Whether a dataset name asks for TensorFlow Datasets (`tfds:...`)."""
    return isinstance(name, str) and name.startswith(PREFIX)


def builder_name(name) -> str:
    """`tfds:NAME[:CONFIG]` as tfds names it, `NAME[/CONFIG]`.

    Raises:
        ValueError: no NAME, or more than one CONFIG.
    """
    parts = name[len(PREFIX):].split(":")
    if not parts[0] or len(parts) > 2 or not all(parts):
        raise ValueError(f"Dataset {name!r} is not tfds:NAME or tfds:NAME:CONFIG (e.g. "
                         f"tfds:oxford_flowers102, tfds:imagenet2012_subset:1pct).")
    return "/".join(parts)


def load(name, *, data_dir, image_size, augmentation):
    """Reads the splits of a TensorFlow Datasets image classification dataset.

    Args:
        name: str, `tfds:NAME` or `tfds:NAME:CONFIG`.
        data_dir: tfds's data dir, or None for its default.
        image_size: int, side of the square images; None for `folder.DEFAULT_SIZE`.
        augmentation: str, one of `AUGMENTATIONS`, as for a `folder`.

    Returns:
        dict, the keyword arguments of `Dataset` but `name`; `val` when the
        dataset has a validation split besides its test split.

    Raises:
        ImportError: tensorflow-datasets is not installed (the message says how).
        ValueError: a name tfds does not know, a dataset without a `train`
            split, one that is not image classification (one image and one
            class label), or too large to hold in memory.
        FileNotFoundError: the dataset is not prepared in the data dir and
            downloads are off; the message says how to prepare it.
    """
    size = folder.DEFAULT_SIZE if image_size is None else image_size
    check_count("image_size", size)
    augment_fn, words, after_eval = folder.training_augmentation(augmentation, size=size)
    tfds = _import(name)
    builder = _builder(tfds, name, data_dir)
    info = builder.info
    image_key, label_key = _keys(info, name)
    splits = set(info.splits)
    if "train" not in splits:
        raise ValueError(f"{name} has no train split (it has {', '.join(sorted(splits))}).")
    if info.dataset_size > MAX_BYTES:
        raise ValueError(f"{name} takes {info.dataset_size / 2**30:.1f} GiB, more than the "
                         f"{MAX_BYTES / 2**30:.0f} GiB held in memory here; write it out as an "
                         f"image folder and use --data.dataset folder.")
    test_name = next((s for s in ("test", "validation") if s in splits), None)
    train = _read(tfds, builder, "train", image_key, label_key)
    if test_name is None:
        train, test = hold_out(train, TEST_FRACTION, seed=_HOLD_OUT_SEED, name=name,
                               key="the test fraction")
    else:
        test = _read(tfds, builder, test_name, image_key, label_key)
    parts = dict(class_names=info.features[label_key].names, image_shape=(size, size, 3),
                 augmentation=words, train=train, test=test, augment_fn=augment_fn,
                 augment_after_eval=after_eval,
                 eval_fn=lambda image: folder.resize_center_crop(image, size=size))
    if test_name == "test" and "validation" in splits:
        parts["val"] = _read(tfds, builder, "validation", image_key, label_key)
    return parts


def _import(name):
    try:
        import tensorflow_datasets
    except ImportError:
        raise ImportError(f"Dataset {name} needs TensorFlow Datasets, which is not installed: "
                          f"pip install {REQUIREMENT}") from None
    return tensorflow_datasets


def _builder(tfds, name, data_dir):
    """tfds's builder of `name`, its data prepared (downloaded when online).

    Raises:
        ValueError: tfds knows no such dataset, registered or in `data_dir`.
        FileNotFoundError: not prepared and downloads are off.
    """
    tfds_name = builder_name(name)
    kwargs = {} if data_dir is None else {"data_dir": os.fspath(data_dir)}
    try:
        builder = tfds.builder(tfds_name, **kwargs)
    except tfds.core.registered.DatasetNotFoundError as e:
        first = next((line for line in str(e).splitlines() if line.strip()), "")
        where = f" nor prepared in {data_dir}" if data_dir is not None else ""
        raise ValueError(f"{name}: TensorFlow Datasets has no dataset {tfds_name!r} "
                         f"registered{where} ({first.strip()}); its catalog: "
                         f"https://www.tensorflow.org/datasets/catalog") from None
    if builder.is_prepared():
        return builder
    if fetch.offline():
        raise FileNotFoundError(
            f"{name} is not prepared in {builder.data_dir}, and downloads are off "
            f"({fetch.OFFLINE_ENV}=1 or --offline): on a machine online run `tfds build "
            f"{tfds_name} --data_dir DIR`, then copy DIR to {builder.data_dir_root} here, or "
            f"pass it as data_dir.")
    builder.download_and_prepare()
    return builder


def _keys(info, name):
    """(image feature, label feature) of an image classification dataset.

    Its `supervised_keys` when they name an image and a class label, else its
    only image and its only class label.
    """
    from tensorflow_datasets import features as features_lib

    features = info.features

    def kind(key, cls):
        return key in features and isinstance(features[key], cls)

    keys = info.supervised_keys
    if (keys and len(keys) == 2 and kind(keys[0], features_lib.Image)
            and kind(keys[1], features_lib.ClassLabel)):
        return keys
    images = [k for k in features if kind(k, features_lib.Image)]
    labels = [k for k in features if kind(k, features_lib.ClassLabel)]
    if len(images) != 1 or len(labels) != 1:
        found = ", ".join(f"{k} ({type(features[k]).__name__})" for k in features)
        raise ValueError(f"{name} is not an image classification dataset with one image and "
                         f"one class label: its features are {found}.")
    return images[0], labels[0]


def _read(tfds, builder, split, image_key, label_key):
    """A `Split` of one tfds split: the images still encoded, in the stored order."""
    examples = without_autotune(builder.as_dataset(
        split=split, shuffle_files=False, decoders={image_key: tfds.decode.SkipDecoding()}))
    encoded, labels = [], []
    for example in examples.as_numpy_iterator():
        encoded.append(example[image_key])
        labels.append(example[label_key])
    return Split(labels, encoded=encoded)
