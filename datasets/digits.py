"""The `digits` dataset (the default): offline, embedded in scikit-learn.

The 1,797 8x8 handwritten digits of `sklearn.datasets.load_digits`, values
0..16 scaled to 0..255, resized to 32x32 with bilinear interpolation
(`tf.image.resize`, half-pixel centers), rounded to uint8, gray replicated to 3
channels. Split with `train_test_split(test_size=0.2, stratify=y,
random_state=0)` into 1,437 training and 360 test images, fixed whatever `seed`
is. Augmentation (`auto`): zero-pad 2 pixels and take a random 32x32 crop (a
shift of at most 2 pixels, half a pixel of the original 8x8 image); no flip,
since a mirrored digit is another symbol or none.
"""

import numpy as np

from datasets.augmentation import native_augmentation
from datasets.input_pipeline import Split, check_native_size
from resnet_keras.backend import tf

SHIFT = 2


def load(name, *, data_dir, image_size, augmentation):
    """Reads the digits into their fixed train and test splits.

    Args:
        name: str, "digits".
        data_dir: must be None: the data is embedded in scikit-learn.
        image_size: None or 32.
        augmentation: str, one of `AUGMENTATIONS` but "inception".

    Returns:
        dict, the keyword arguments of `Dataset` but `name`.

    Raises:
        ValueError: `data_dir`, an `image_size` other than 32 or
            `augmentation="inception"` is given.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if data_dir is not None:
        raise ValueError("The digits dataset is embedded in scikit-learn and takes no "
                         f"data_dir (got {data_dir!r}); did you mean dataset='folder'?")
    check_native_size(name, image_size)
    augment, words = native_augmentation(name, augmentation, pad=SHIFT, flip=False)
    digits = load_digits()
    images = digits.images[..., None].astype(np.float32) * (255.0 / 16.0)
    images = tf.image.resize(images, (32, 32), method="bilinear").numpy()
    images = np.repeat(np.clip(np.round(images), 0, 255).astype(np.uint8), 3, axis=-1)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.2, stratify=digits.target, random_state=0)
    return dict(class_names=[str(c) for c in digits.target_names], image_shape=(32, 32, 3),
                augmentation=words,
                train=Split(y_train, images=x_train), test=Split(y_test, images=x_test),
                augment_fn=augment, eval_fn=tf.identity)
