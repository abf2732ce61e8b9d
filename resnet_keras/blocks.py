"""Residual blocks and stages as tensor-in, tensor-out functions (arXiv 1512.03385, sec. 3).

Layer names follow keras.applications (`conv3_block2_1_conv`, `_0_conv` for a
projection shortcut, `_add`, `_out`) so that weight files load by name.
"""

import dataclasses

import numpy as np

from resnet_keras.backend import keras

layers = keras.layers
# Name suffix of the option-A shortcut's fixed subsampling conv (see `shortcut`).
SUBSAMPLE = "_0_subsample"


@dataclasses.dataclass(frozen=True)
class Layout:
    """Details on which the published ResNet implementations differ.

    Attributes:
        conv_bias: convolutions carry a bias (keras.applications) or not
            (torchvision, CIFAR): a bias before BatchNorm is redundant.
        bn_epsilon: BatchNorm epsilon (1.001e-5 keras.applications, 1e-5 torch).
        bn_momentum: BatchNorm moving-average momentum in Keras's convention.
        stride_on_3x3: put a bottleneck's stride on the 3x3 (v1.5) instead of
            the first 1x1 (v1, the paper).
        shortcut: `A` zero-pads channels of a strided identity, `B` projects
            with a 1x1 conv; used only where the shape changes (paper sec. 3.3).
        kernel_regularizer: regularizer for every conv and dense kernel.
        zero_init_last_bn: start each residual branch's last BN gamma at zero,
            so each block starts as the identity (Goyal et al., arXiv 1706.02677).
    """

    conv_bias: bool = False
    bn_epsilon: float = 1e-5
    bn_momentum: float = 0.9
    stride_on_3x3: bool = True
    shortcut: str = "B"
    kernel_regularizer: object = None
    zero_init_last_bn: bool = False


def conv_bn(x, filters, kernel_size, *, stride=1, layout, name, relu=True,
            zero_gamma=False):
    """Conv, BatchNorm and (optionally) ReLU named `{name}_conv/_bn/_relu`.

    A strided conv wider than 1x1 pads explicitly by kernel_size // 2 on every
    side, as Caffe and PyTorch do; Keras's 'same' would pad only bottom/right.
    """
    padding = "same"
    if stride > 1 and kernel_size > 1:
        x = layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
        padding = "valid"
    x = layers.Conv2D(filters, kernel_size, strides=stride, padding=padding,
                      use_bias=layout.conv_bias,
                      kernel_regularizer=layout.kernel_regularizer,
                      name=f"{name}_conv")(x)
    x = layers.BatchNormalization(
        epsilon=layout.bn_epsilon, momentum=layout.bn_momentum,
        gamma_initializer="zeros" if zero_gamma else "ones", name=f"{name}_bn")(x)
    if relu:
        x = layers.Activation("relu", name=f"{name}_relu")(x)
    return x


def shortcut(x, filters, *, stride, layout, name):
    """The identity, or what replaces it when the block changes shape.

    Option A (paper sec. 4.2) is the identity subsampled by the stride, with
    zero channels appended. It is one frozen 1x1 conv of that stride whose
    kernel is [I 0] (`subsample_kernel`): each output is one input times 1
    plus zeros, so it computes exactly that, in any precision, without a
    Lambda layer, as one CONV_2D that XNNPACK and the Edge TPU both run (a
    1x1 stride-2 pooling is left to LiteRT's own kernels and cuts the graph).
    Its fixed weights are not learned (`trainable=False`, no regularizer).
    Option B is a 1x1 projection conv + BN.
    """
    in_filters = x.shape[-1]
    if stride == 1 and in_filters == filters:
        return x
    if layout.shortcut == "B":
        return conv_bn(x, filters, 1, stride=stride, layout=layout,
                       name=f"{name}_0", relu=False)
    return layers.Conv2D(
        filters, 1, strides=stride, use_bias=False, trainable=False,
        kernel_initializer=keras.initializers.Constant(
            subsample_kernel(in_filters, filters).tolist()),
        name=f"{name}{SUBSAMPLE}")(x)


def subsample_kernel(in_filters, filters):
    """The option-A shortcut's 1x1 kernel: input channel i to output channel i, the rest 0."""
    kernel = np.zeros((1, 1, in_filters, filters), np.float32)
    kernel[0, 0, np.arange(in_filters), np.arange(in_filters)] = 1.0
    return kernel


def _merge(x, short, *, name):
    """Adds the shortcut (if any) and applies the block's final ReLU."""
    if short is not None:
        x = layers.Add(name=f"{name}_add")([short, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def basic_block(x, filters, *, stride=1, layout, residual=True, name):
    """Two 3x3 convs (ResNet-18/34 and the CIFAR nets, paper Fig. 5 left).

    Args:
        x: input tensor.
        filters: output channels.
        stride: stride of the first conv.
        layout: a `Layout`.
        residual: add the shortcut; False gives the plain net's block.
        name: block prefix, e.g. `conv2_block1`.

    Returns:
        The block's output tensor.
    """
    short = shortcut(x, filters, stride=stride, layout=layout, name=name) if residual else None
    y = conv_bn(x, filters, 3, stride=stride, layout=layout, name=f"{name}_1")
    y = conv_bn(y, filters, 3, layout=layout, name=f"{name}_2", relu=False,
                zero_gamma=residual and layout.zero_init_last_bn)
    return _merge(y, short, name=name)


def bottleneck_block(x, filters, *, stride=1, layout, residual=True, name):
    """1x1 reduce, 3x3, 1x1 expand to 4 * filters (ResNet-50/101/152, Fig. 5 right).

    Args:
        x: input tensor.
        filters: inner width; the block outputs 4 * filters channels.
        stride: on the 3x3 (v1.5) or the first 1x1 (v1), per `layout`.
        layout: a `Layout`.
        residual: add the shortcut; False gives the plain net's block.
        name: block prefix, e.g. `conv3_block1`.

    Returns:
        The block's output tensor.
    """
    short = (shortcut(x, 4 * filters, stride=stride, layout=layout, name=name)
             if residual else None)
    stride_1x1, stride_3x3 = (1, stride) if layout.stride_on_3x3 else (stride, 1)
    y = conv_bn(x, filters, 1, stride=stride_1x1, layout=layout, name=f"{name}_1")
    y = conv_bn(y, filters, 3, stride=stride_3x3, layout=layout, name=f"{name}_2")
    y = conv_bn(y, 4 * filters, 1, layout=layout, name=f"{name}_3", relu=False,
                zero_gamma=residual and layout.zero_init_last_bn)
    return _merge(y, short, name=name)


def preact_bottleneck_block(x, filters, *, stride=1, layout, residual=True, name):
    """Pre-activation bottleneck (He et al. 2016, arXiv 1603.05027), as keras.applications v2.

    BN and ReLU come before each conv; the block ends at the addition with no
    ReLU after it. Where the channels change (the first block of a stage) the
    shortcut is a 1x1 conv of the pre-activation, as keras.applications'
    `conv_shortcut`; a strided identity is a 1x1 max-pool.

    Args:
        x: input tensor.
        filters: inner width; the block outputs 4 * filters channels.
        stride: stride of the 3x3 conv.
        layout: a `Layout` (conv_bias applies to the last 1x1 and projection).
        residual: must be True: the output is the addition, so there is no
            plain counterpart.
        name: block prefix.

    Returns:
        The block's output tensor.

    Raises:
        ValueError: `residual` is False.
    """
    if not residual:
        raise ValueError(f"{name}: preact_bottleneck blocks have no plain counterpart "
                         f"(residual=False); use `basic` or `bottleneck`.")
    bn = dict(epsilon=layout.bn_epsilon, momentum=layout.bn_momentum)
    reg = dict(kernel_regularizer=layout.kernel_regularizer)
    preact = layers.BatchNormalization(**bn, name=f"{name}_preact_bn")(x)
    preact = layers.Activation("relu", name=f"{name}_preact_relu")(preact)
    if x.shape[-1] != 4 * filters:
        short = layers.Conv2D(4 * filters, 1, strides=stride, use_bias=layout.conv_bias,
                              **reg, name=f"{name}_0_conv")(preact)
    elif stride > 1:
        short = layers.MaxPooling2D(1, strides=stride, name=f"{name}_0_pool")(x)
    else:
        short = x
    y = conv_bn(preact, filters, 1, layout=dataclasses.replace(layout, conv_bias=False),
                name=f"{name}_1")
    y = layers.ZeroPadding2D(1, name=f"{name}_2_pad")(y)
    y = layers.Conv2D(filters, 3, strides=stride, use_bias=False, **reg,
                      name=f"{name}_2_conv")(y)
    y = layers.BatchNormalization(**bn, name=f"{name}_2_bn")(y)
    y = layers.Activation("relu", name=f"{name}_2_relu")(y)
    y = layers.Conv2D(4 * filters, 1, use_bias=layout.conv_bias, **reg,
                      name=f"{name}_3_conv")(y)
    return layers.Add(name=f"{name}_out")([short, y])


# Every block kind of the registry, each called as
# `block(x, filters, *, stride, layout, residual, name)`.
BLOCKS = {
    "basic": basic_block,
    "bottleneck": bottleneck_block,
    "preact_bottleneck": preact_bottleneck_block,
}


def stack(x, filters, blocks, *, block, stride, stride_block="first", layout, residual=True,
          name):
    """One stage (`conv2_x` .. `conv5_x` in Table 1): `blocks` blocks of one kind.

    Args:
        x: input tensor.
        filters: filters of the stage's blocks.
        blocks: number of blocks.
        block: a key of `BLOCKS` (a `ModelSpec` checks it).
        stride: the stage's downsampling stride (1 or 2).
        stride_block: `first` or `last`: the block that carries the stride.
        layout: a `Layout`.
        residual: False builds the plain counterpart.
        name: stage prefix, e.g. `conv3`.

    Returns:
        The stage's output tensor.
    """
    strided = {"first": 1, "last": blocks}[stride_block]
    for i in range(1, blocks + 1):
        x = BLOCKS[block](x, filters, stride=stride if i == strided else 1,
                          layout=layout, residual=residual, name=f"{name}_block{i}")
    return x
