"""The training augmentations: a random shift with zero fill and an optional flip, the
CIFAR recipe of He et al. 2015 (arXiv 1512.03385, sec. 4.2), and each source's `auto`.
"""

from resnet_keras.backend import tf

# The training augmentations `load_dataset` accepts. `auto` is each source's
# own; the others mean the same for every source (see `shift_augmentation`).
AUGMENTATIONS = ("auto", "inception", "pad_crop_flip", "pad_crop", "none")
NO_AUGMENTATION = "none (trains on the evaluation images)"


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


def shift_augmentation(*, size, flip, pad=None):
    """A random shift, zero-filled, and optionally a random horizontal flip.

    Args:
        size: int, side of the square images it augments.
        flip: bool, flip half the images left-right.
        pad: int, the largest shift in pixels; default `size / 8`, the CIFAR
            recipe's 4 pixels at 32 (arXiv 1512.03385, sec. 4.2).

    Returns:
        `(augment_fn, words)`: a `Dataset.augment_fn` and what it does.
    """
    pad = max(1, round(size / 8)) if pad is None else pad

    def augment(image, seed):
        if not flip:
            return pad_crop(image, seed, pad=pad)
        crop_seed, flip_seed = tf.unstack(tf.random.split(seed, 2))
        return tf.image.stateless_random_flip_left_right(pad_crop(image, crop_seed, pad=pad),
                                                         flip_seed)

    flip_words = " + horizontal flip" if flip else " (no flip)"
    return augment, f"zero-pad {pad} + random {size}x{size} crop{flip_words}"


def native_augmentation(name, augmentation, *, pad, flip, cite=""):
    """The augmentation of an in-memory 32x32 dataset, whose `auto` is its own recipe.

    Args:
        name: str, the dataset, for messages.
        augmentation: str, one of `AUGMENTATIONS`.
        pad: int, `auto`'s largest shift in pixels.
        flip: bool, whether `auto` flips left-right.
        cite: str, appended to `auto`'s words (where the recipe comes from).

    Returns:
        `(augment_fn, words)`, as `shift_augmentation`.

    Raises:
        ValueError: `inception`, which is for larger images of a `folder`.
    """
    if augmentation == "inception":
        others = ", ".join(repr(a) for a in AUGMENTATIONS if a != "inception")
        raise ValueError(
            f"augmentation='inception' (a random crop of 8%-100% of the area, resized) is "
            f"for the 'folder' dataset; on the 32x32 {name} images it crops the object "
            f"away. Use one of {others}.")
    if augmentation == "none":
        return (lambda image, seed: image), NO_AUGMENTATION
    if augmentation == "auto":
        augment, words = shift_augmentation(size=32, flip=flip, pad=pad)
        return augment, words + cite
    return shift_augmentation(size=32, flip=augmentation == "pad_crop_flip")
