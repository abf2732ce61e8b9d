"""The `folder` dataset: an ImageNet-style tree of image files, any format TF decodes.

The tree is `data_dir/train/<class>/*` and `data_dir/val/<class>/*`, `val`
being the test split; class names are the sorted folder names under `train`,
at least two (one folder of images is a tree one level too shallow, not a
classifier's data). Every file is checked once up front and those TensorFlow
cannot decode are skipped and logged.

Links: a linked file is read, and a linked folder followed (a class can live
on another disk), but each file counts once however many paths reach it
(symlinks or hard links), under its first path in sorted order; a folder link
that leads back to a folder already walked or above it (`again -> .`) is not
followed. Both are logged. Following links that do not loop keeps the trees
people build with `ln -s` working, where "never follow" would quietly drop
their classes. A file in two classes of one split is an error; files in both
`train` and `val` are logged, since they inflate test accuracy.

Evaluation: resize the shorter side to
`image_size * 256 / 224`, center crop `image_size` (default 224), round to
whole pixel values (so `test()` sees exactly the pixels of `test_arrays()`).

Training augmentation, one of `AUGMENTATIONS`: `inception` as He et al. 2015
(arXiv 1512.03385), sec. 3.4, a random crop of 8%-100% of the area with aspect
ratio 3/4-4/3 resized to `image_size`, and a random horizontal flip;
`pad_crop_flip` and `pad_crop` shift the evaluation image by at most
`image_size / 8` pixels, zero-filled, with or without a flip (the CIFAR recipe,
sec. 4.2); `none` trains on the evaluation images. `auto` is `inception` from
`INCEPTION_MIN_SIZE` up (ImageNet-like images) and `pad_crop_flip` below: a
crop of 8% of a small image's area leaves too little of the object (a
Fashion-MNIST folder at 32x32 reached 86.5% after 3 epochs with `inception`).
"""

import concurrent.futures
import logging
import os

from datasets.augmentation import NO_AUGMENTATION, shift_augmentation
from datasets.input_pipeline import Split, check_count
from resnet_keras.backend import tf

LAYOUT = ("data_dir/train/<class name>/<image files>  and  "
          "data_dir/val/<class name>/<image files>")
# What tf.io.decode_image reads (MPO is a multi-picture JPEG from cameras).
DECODABLE_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP")
DEFAULT_SIZE = 224
INCEPTION_MIN_SIZE = 128
INCEPTION = "random-resized crop (area 0.08-1, aspect 3/4-4/3) + horizontal flip"

_RESIZE_RATIO = 256 / 224  # ImageNet evaluation: resize to 256, center crop 224.
_LOG_FIRST_SKIPPED = 5

logger = logging.getLogger(__name__)


def augment(image, seed, *, size):
    """Inception-style crop (arXiv 1409.4842), as torchvision's RandomResizedCrop, and flip.

    Args:
        image: uint8 tensor `(H, W, 3)`, any size.
        seed: int tensor `(2,)`, a stateless seed.
        size: int, side of the square result.

    Returns:
        A float32 tensor `(size, size, 3)`.
    """
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


def resize_center_crop(image, *, size):
    """ImageNet evaluation: the shorter side to `size * 256 / 224`, then the center square.

    Args:
        image: uint8 tensor `(H, W, 3)`, any size.
        size: int, side of the square result.

    Returns:
        A float32 tensor `(size, size, 3)` of whole pixel values in [0, 255].
    """
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


def training_augmentation(augmentation, *, size):
    """What `augmentation` means for images of side `size`.

    Args:
        augmentation: str, one of `AUGMENTATIONS`.
        size: int, side of the square images.

    Returns:
        `(augment_fn, words, after_eval)`: the `Dataset.augment_fn`, what it
        does, and whether it takes the evaluation image (`augment_after_eval`).
    """
    if augmentation == "auto":
        augmentation = "inception" if size >= INCEPTION_MIN_SIZE else "pad_crop_flip"
    if augmentation == "inception":
        return (lambda image, seed: augment(image, seed, size=size)), INCEPTION, False
    if augmentation == "none":
        return (lambda image, seed: image), NO_AUGMENTATION, True
    shift, words = shift_augmentation(size=size, flip=augmentation == "pad_crop_flip")
    return shift, f"evaluation resize and center crop, then {words}", True


def load(name, *, data_dir, image_size, augmentation):
    """Lists the decodable images of the train and val trees under `data_dir`.

    Args:
        name: str, "folder".
        data_dir: str or path, the root of the train/val tree.
        image_size: int, side of the square images; None for `DEFAULT_SIZE`.
        augmentation: str, one of `AUGMENTATIONS` (see the module docstring).

    Returns:
        dict, the keyword arguments of `Dataset` but `name`.

    Raises:
        ValueError: no `data_dir`, a bad `image_size`, a tree that breaks
            `LAYOUT` (the message says how), fewer than two classes, or one
            file in two classes.
        FileNotFoundError: `data_dir`, or its `train` or `val`, is missing.
    """
    if data_dir is None:
        raise ValueError(f"The {name} dataset needs data_dir, a folder laid out as "
                         f"{LAYOUT}.")
    root = os.fspath(data_dir)
    size = DEFAULT_SIZE if image_size is None else image_size
    check_count("image_size", size)
    augment_fn, words, after_eval = training_augmentation(augmentation, size=size)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"data_dir {root} does not exist or is not a folder; "
                                f"expected {LAYOUT}.")
    for split in ("train", "val"):
        if not os.path.isdir(os.path.join(root, split)):
            raise FileNotFoundError(f"{os.path.join(root, split)} does not exist; the {name} "
                                    f"dataset expects {LAYOUT}.")
    train_dir, val_dir = os.path.join(root, "train"), os.path.join(root, "val")
    class_names = [e for e in _visible_entries(train_dir)
                   if os.path.isdir(os.path.join(train_dir, e))]
    if len(class_names) < 2:
        found = (f"1 class folder ({class_names[0]})" if class_names
                 else "no class folders")
        raise ValueError(f"{train_dir} has {found}; a classifier needs at least 2, each "
                         f"holding the images of one class: {LAYOUT}.")
    unknown = [e for e in _visible_entries(val_dir)
               if os.path.isdir(os.path.join(val_dir, e)) and e not in class_names]
    if unknown:
        raise ValueError(f"{val_dir} has class folders that {train_dir} lacks: "
                         f"{', '.join(unknown)}. Both must use the same class names.")
    train_seen, val_seen = {}, {}
    train_paths, train_labels, skipped, repeated = _scan_split(train_dir, class_names,
                                                               train_seen)
    val_paths, val_labels, val_skipped, val_repeated = _scan_split(val_dir, class_names,
                                                                   val_seen)
    skipped += val_skipped
    repeated += val_repeated
    if not val_paths:
        raise ValueError(f"{val_dir} has no class folders with images; expected {LAYOUT}.")
    if skipped:
        total = len(train_paths) + len(val_paths) + len(skipped)
        logger.warning("%s dataset %s: skipped %d of %d files that are not decodable "
                       "images: %s", name, root, len(skipped), total, _listing(skipped, root))
    if repeated:
        logger.warning("%s dataset %s: %d paths lead to files or folders already read, each "
                       "read once: %s", name, root, len(repeated), _listing(repeated, root))
    shared = sorted((val_seen[key], f"the same file as {os.path.relpath(train_seen[key], root)}")
                    for key in val_seen.keys() & train_seen.keys())
    if shared:
        logger.warning("%s dataset %s: %d of the %d val images are also training images, so "
                       "test accuracy overstates: %s", name, root, len(shared), len(val_paths),
                       _listing(shared, root))
    return dict(class_names=class_names, image_shape=(size, size, 3),
                augmentation=words,
                train=Split(train_labels, paths=train_paths),
                test=Split(val_labels, paths=val_paths),
                augment_fn=augment_fn, augment_after_eval=after_eval,
                eval_fn=lambda image: resize_center_crop(image, size=size),
                skipped_files=[p for p, _ in skipped])


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
    except Exception as e:
        # PIL raises many types for a file that is not an image (OSError,
        # SyntaxError, struct.error, ...): each means "skip it"; the reason is logged.
        return f"not a readable image ({type(e).__name__})"
    return None


def _scan_split(split_dir, class_names, seen):
    """(paths, labels, [(path, why) skipped], [(path, why) read once]) of one split.

    `seen`, a dict, is filled with {file identity: path} of the files listed.
    """
    present = [c for c in class_names if os.path.isdir(os.path.join(split_dir, c))]
    files, repeated, owner = {}, [], {}
    for c in present:
        found, loops = _walk_class(os.path.join(split_dir, c))
        repeated += [(p, "a folder link that loops, not followed") for p in loops]
        files[c] = []
        for path in found:
            # A broken link has no identity; the image check reports it.
            key = _identity(path) or path
            if key not in seen:
                seen[key], owner[key] = path, c
                files[c].append(path)
            elif owner[key] == c:
                first = os.path.relpath(seen[key], os.path.dirname(split_dir))
                repeated.append((path, f"the same file as {first}"))
            else:
                raise ValueError(f"{path} and {seen[key]} are the same file, in classes "
                                 f"{c!r} and {owner[key]!r}; an image has one class: remove "
                                 f"one of them.")
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
    return paths, labels, skipped, repeated


def _walk_class(class_dir):
    """Sorted visible files under `class_dir`, and the folder links left out as loops."""
    # A loop leads to a folder already walked or to one above `class_dir`;
    # skipping both ends every loop, since no folder is entered twice.
    walked = {_identity(class_dir)}
    above, parent = set(), os.path.realpath(class_dir)
    while parent != os.path.dirname(parent):
        parent = os.path.dirname(parent)
        above.add(_identity(parent))
    found, loops = [], []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        # Hidden folders and files (.DS_Store, .ipynb_checkpoints) are
        # tool metadata, not data worth a warning.
        kept = []
        for d in sorted(d for d in dirnames if not d.startswith(".")):
            key = _identity(os.path.join(dirpath, d))
            if key in walked or key in above:
                loops.append(os.path.join(dirpath, d))
            else:
                walked.add(key)
                kept.append(d)
        dirnames[:] = kept
        found += [os.path.join(dirpath, f) for f in filenames if not f.startswith(".")]
    return sorted(found), sorted(loops)


def _identity(path):
    """(device, inode) of what `path` leads to, the same for every link to it; None if
    it leads nowhere."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    # Some network and FUSE file systems report inode 0 for every file.
    return (info.st_dev, info.st_ino) if info.st_ino else os.path.realpath(path)


def _listing(pairs, root):
    """`path (why); ...` of the first few `(path, why)`, paths relative to `root`."""
    first = "; ".join(f"{os.path.relpath(p, root)} ({why})"
                      for p, why in pairs[:_LOG_FIRST_SKIPPED])
    more = len(pairs) - _LOG_FIRST_SKIPPED
    return first + (f"; and {more} more" if more > 0 else "")
