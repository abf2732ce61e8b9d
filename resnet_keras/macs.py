"""Counts multiply-adds of a built model, the "FLOPs" of paper Table 1 (arXiv 1512.03385).

Convolutions and dense layers only, as the paper counts; BatchNorm, additions
and pooling are negligible beside them.
"""

import math

from resnet_keras.backend import keras


def _layer_macs(layer) -> int:
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        out = layer.output_shape
        return math.prod(layer.kernel_size) * math.prod(out[1:])
    if isinstance(layer, keras.layers.Conv2D):
        out = layer.output_shape
        in_channels = layer.input_shape[-1] // layer.groups
        return math.prod(layer.kernel_size) * in_channels * math.prod(out[1:])
    if isinstance(layer, keras.layers.Dense):
        return layer.input_shape[-1] * layer.units
    return 0


def count_macs(model) -> int:
    """Multiply-adds of one forward pass of one image.

    Args:
        model: a tf_keras functional model with a fixed input size.

    Returns:
        int, the multiply-adds of all convolution and dense layers.

    Raises:
        ValueError: the model's input size is not fixed.
    """
    if any(d is None for d in model.input_shape[1:]):
        raise ValueError(f"count_macs needs a fixed input size; {model.name} has input "
                         f"shape {model.input_shape}. Build it with input_shape=(H, W, 3).")
    return sum(_layer_macs(layer) for layer in model.layers)
