"""The networks the benchmarks time: ours as train.py builds it, and the references to it.

A reference is what a Keras user would train instead: keras.applications'
ResNet50, or a ResNet-20 written by hand (`hand_built_resnet20`), each
compiled plainly (SGD, loss and accuracy only).
"""

from job import config as config_lib
from resnet_keras import build_model
from resnet_keras.backend import keras
from training.loop import build_training_model, compile_model


def our_training_model(name, *, image_size, classes, jit_compile=False, policy="float32",
                       variant=None):
    """The model and compile step train.py uses, for `name` (weight decay, metrics included).

    `policy` is the Keras dtype policy it is built under (`mixed_bfloat16`:
    what `--train.mixed_precision auto` picks on a CPU with bfloat16);
    `variant` "v1" or "v1.5" for the ImageNet nets (None: the default,
    the only one for the CIFAR nets).
    """
    overrides = {"model.name": name}
    if variant:
        overrides["model.variant"] = variant
    config = config_lib.resolve(overrides=overrides)
    model = build_training_model(config.model, weight_decay=config.train.weight_decay,
                                 num_classes=classes,
                                 image_shape=(image_size, image_size, 3), policy=policy)
    compile_model(model, optimizer=keras.optimizers.SGD(0.1, momentum=0.9), num_classes=classes,
                  label_smoothing=0.0, jit_compile=jit_compile)
    return model


def bare_training_model(name, *, image_size, classes):
    """Our `name` compiled as the references are: no weight decay, no top-5 metric.

    Beside `our_training_model` it splits a gap to the reference into what
    train.py adds and what the network itself costs.
    """
    return _compile_plain(build_model(name, input_shape=(image_size, image_size, 3),
                                      classes=classes))


def _compile_plain(model):
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def keras_applications_resnet50(*, image_size, classes):
    """keras.applications' ResNet50, untrained, compiled plainly: resnet50's reference."""
    return _compile_plain(keras.applications.ResNet50(
        weights=None, input_shape=(image_size, image_size, 3), classes=classes))


def hand_built_resnet20(*, image_size, classes, normalization=False, explicit_pad=False,
                        option_a=False):
    """ResNet-20 written the way a Keras user would by hand (option B shortcuts, 'same' padding).

    Each flag adds one thing our resnet20 does differently, to time what it
    costs (`benchmarks.resnet20_differences`).

    Args:
        normalization: a `Normalization` layer (mean and variance 127.5^2)
            instead of `Rescaling(1 / 127.5, offset=-1)`; the same function.
        explicit_pad: `ZeroPadding2D(1)` and a 'valid' conv where the stride is
            2 (1 pixel each side, as torchvision), instead of 'same' (0 before,
            1 after, TensorFlow's rule for even sizes).
        option_a: the paper's parameter-free shortcut, a frozen 1x1 stride-2
            conv with the [I 0] kernel (`resnet_keras.blocks.subsample_kernel`),
            instead of a 1x1 projection conv + BN.
    """
    from resnet_keras.blocks import subsample_kernel
    layers = keras.layers

    def conv_bn(x, filters, stride=1, relu=True):
        if stride > 1 and explicit_pad:
            x = layers.ZeroPadding2D(1)(x)
        x = layers.Conv2D(filters, 3, strides=stride, use_bias=False,
                          padding="valid" if stride > 1 and explicit_pad else "same")(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU()(x) if relu else x

    def projection(x, filters):
        if option_a:
            return layers.Conv2D(filters, 1, strides=2, use_bias=False, trainable=False,
                                 kernel_initializer=keras.initializers.Constant(
                                     subsample_kernel(x.shape[-1], filters).tolist()))(x)
        return layers.BatchNormalization()(
            layers.Conv2D(filters, 1, strides=2, use_bias=False)(x))

    inputs = layers.Input((image_size, image_size, 3))
    x = (layers.Normalization(mean=127.5, variance=127.5 ** 2) if normalization
         else layers.Rescaling(1 / 127.5, offset=-1))(inputs)
    x = conv_bn(x, 16)
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(3):
            stride = 2 if stage > 0 and block == 0 else 1
            y = conv_bn(conv_bn(x, filters, stride), filters, relu=False)
            if stride > 1:
                x = projection(x, filters)
            x = layers.ReLU()(layers.Add()([x, y]))
    x = layers.Dense(classes, activation="softmax")(layers.GlobalAveragePooling2D()(x))
    return _compile_plain(keras.Model(inputs, x))
