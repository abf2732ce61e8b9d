"""Quantization-aware training (QAT) of the ResNet family with tfmot's 8-bit scheme.

Weights and activations are fake-quantized where the int8 TFLite kernels round
them (Jacob et al. 2018, arXiv 1712.05877), so that a short fine-tuning learns
to absorb the rounding. The float model passed in is left untouched:

    >>> from quantization.qat import load_qat_model, quantize_model
    >>> qat = quantize_model(model)  # a trained float model from resnet_keras
    >>> qat.compile(keras.optimizers.SGD(1e-3, momentum=0.9),
    ...             "sparse_categorical_crossentropy", metrics=["accuracy"])
    >>> qat.fit(dataset.train(128), epochs=2)
    >>> qat.save("qat.keras")
    >>> qat = load_qat_model("qat.keras")

Fine-tuning is plain `compile` + `fit` on the returned model; use a learning
rate 10-100x below the float run's (the float weights are already good). The
QAT model converts with `export.tflite.convert(qat, "int8_qat")`.

tfmot's default scheme already places the fake-quant ops as TFLite fuses:
Conv2D+BatchNorm(+ReLU) fold into one conv with one output quantizer, an Add
followed by a ReLU is quantized once after the ReLU, Concatenate once after
the concatenation; ZeroPadding2D, Cropping2D and MaxPooling2D pass their
input's quantization through (in either data_format). What it does not cover
is rewritten here, in the QAT model only:

- The input `Normalization` (fixed mean and variance) becomes the equivalent
  frozen 1x1 `DepthwiseConv2D`, output quantized. Quantizing only the
  Normalization's output would leave its subtract and multiply in float in
  TFLite (DEQUANTIZE, SUB, MUL, QUANTIZE), which an int8-only runtime such as
  the Edge TPU cannot run; as a depthwise conv it is one int8 op, and its one
  weight per channel quantizes exactly.
- A BatchNormalization that no conv precedes (the pre-activation BNs of the
  v2 nets) becomes the 1x1 `DepthwiseConv2D` of its inference-time affine
  map, for the same reason. Its moving statistics are thereby frozen during
  fine-tuning, as Krishnamoorthi (arXiv 1806.08342, sec. 3.2) recommends for
  QAT; its scale and offset stay trainable.
- The input quantizer's range is set to exactly [0, 255], the raw pixels the
  models take, so that the int8 model's uint8 input has scale 1 and zero
  point 0 and a uint8 image is fed without rounding.
"""

import os

import numpy as np
import tensorflow_model_optimization as tfmot

from resnet_keras.backend import keras

INPUT_RANGE = (0.0, 255.0)

_qk = tfmot.quantization.keras
# Activations that Default8BitActivationQuantizeConfig accepts.
_SUPPORTED_ACTIVATIONS = ("relu", "relu6", "swish", "gelu", "linear", "softmax", "sigmoid",
                          "tanh")
# Layers tfmot's Conv2DBatchNorm* transforms fold into a preceding conv.
_FOLDING_CONVS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)


def quantize_scope():
    """The custom-object scope in which QAT models are cloned, saved and loaded.

    Returns:
        A context manager (tfmot's `quantize_scope`); `load_qat_model` uses it.

    Example:

    >>> with quantize_scope():
    ...     model = keras.models.load_model("qat.keras", safe_mode=True)
    """
    return _qk.quantize_scope()


def quantize_model(model):
    """Returns a QAT copy of a float model, ready to compile and fine-tune.

    Args:
        model: a built functional or Sequential tf_keras model, e.g. from
            `resnet_keras.build_model`; any registry network is supported.
            Its input is expected to be raw pixels in `INPUT_RANGE`.

    Returns:
        A new tf_keras `Model` whose layers are wrapped by tfmot
        (`QuantizeWrapperV2`, prefix `quant_`), with the float model's
        weights. Layer names keep the float model's names after the prefix.

    Raises:
        ValueError: the model is not a functional or Sequential model, or a
            layer cannot be quantized; the message names the layer and its
            class.
    """
    if not isinstance(model, keras.Model) or not (
            isinstance(model, keras.Sequential) or model._is_graph_network):  # noqa: SLF001
        raise ValueError(
            f"quantize_model needs a functional or Sequential tf_keras model, got "
            f"{type(model).__name__}; subclassed models cannot be cloned layer by layer.")
    producers = _producers(model)
    registry = _qk.default_8bit.Default8BitQuantizeRegistry()
    replacements = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.layers.Normalization):
            replacements[layer.name] = _normalization_as_affine(layer)
        elif (isinstance(layer, keras.layers.BatchNormalization)
              and not _folds_into_conv(model, producers[layer.name])):
            replacements[layer.name] = _batch_norm_as_affine(layer)
        elif not isinstance(layer, keras.layers.BatchNormalization):
            _check_supported(layer, registry)

    def annotate(layer):
        return _qk.quantize_annotate_layer(replacements.get(layer.name, layer))

    annotated = keras.models.clone_model(model, clone_function=annotate)
    with quantize_scope():
        qat = _qk.quantize_apply(annotated)
    _fix_input_range(qat)
    return qat


def load_qat_model(path):
    """Loads a QAT model saved with `model.save(path)` (`.keras` format).

    Args:
        path: str or path-like, a `.keras` file written by a QAT model.

    Returns:
        The QAT tf_keras `Model`, compiled if it was saved compiled.

    Raises:
        FileNotFoundError: `path` does not exist.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"QAT model file {path} does not exist.")
    with quantize_scope():
        return keras.models.load_model(path, safe_mode=True)


def _producers(model):
    """{layer name: names of the layers whose outputs it takes}."""
    if isinstance(model, keras.Sequential):
        names = [layer.name for layer in model.layers]
        return {name: previous for previous, name in zip([[]] + [[n] for n in names], names)}
    return {entry["config"]["name"]: [inbound[0] for node in entry["inbound_nodes"]
                                      for inbound in node]
            for entry in model.get_config()["layers"]}


def _folds_into_conv(model, producer_names):
    """Whether tfmot's Conv2DBatchNorm* transforms fold a BN with these producers."""
    if len(producer_names) != 1:
        return False
    producer = model.get_layer(producer_names[0])
    return (isinstance(producer, _FOLDING_CONVS)
            and keras.activations.serialize(producer.activation) == "linear")


def _check_supported(layer, registry):
    kind = type(layer).__name__
    if not registry.supports(layer):
        raise ValueError(
            f"Layer {layer.name!r} ({kind}) cannot be quantized: tfmot's default 8-bit "
            f"scheme has no QuantizeConfig for {kind}. Build the model from standard "
            f"layers (Conv2D, BatchNormalization, Activation, Add, Concatenate, pooling, "
            f"padding, cropping, Dense) or replace the layer.")
    if isinstance(layer, keras.layers.Activation):
        name = keras.activations.serialize(layer.activation)
        if name not in _SUPPORTED_ACTIVATIONS:
            raise ValueError(
                f"Layer {layer.name!r} ({kind}) cannot be quantized: activation {name!r} is "
                f"not supported; supported: {', '.join(_SUPPORTED_ACTIVATIONS)}.")


def _channel_axis_is_last(layer):
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    rank = len(layer.input_shape)
    return rank == 4 and [a % rank for a in axis] == [rank - 1]


def _affine(name, scale, offset, *, trainable, input_shape):
    """A 1x1 DepthwiseConv2D computing `x * scale + offset` per channel."""
    affine = keras.layers.DepthwiseConv2D(1, name=name, trainable=trainable)
    affine.build(input_shape)
    affine.set_weights([np.reshape(scale, (1, 1, -1, 1)).astype(np.float32),
                        np.reshape(offset, (-1,)).astype(np.float32)])
    return affine


def _normalization_as_affine(layer):
    kind = type(layer).__name__
    if layer.invert or not _channel_axis_is_last(layer):
        raise ValueError(
            f"Layer {layer.name!r} ({kind}) cannot be quantized: only a per-channel "
            f"Normalization (axis=-1, invert=False) of a 4-D image input is supported.")
    mean = np.reshape(layer.mean, (-1,))
    # As Normalization.call: the std is floored at the backend epsilon.
    std = np.maximum(np.sqrt(np.reshape(layer.variance, (-1,))), keras.backend.epsilon())
    return _affine(layer.name, 1.0 / std, -mean / std, trainable=False,
                   input_shape=layer.input_shape)


def _batch_norm_as_affine(layer):
    kind = type(layer).__name__
    if not _channel_axis_is_last(layer):
        raise ValueError(
            f"Layer {layer.name!r} ({kind}) cannot be quantized: a BatchNormalization that "
            f"does not follow a Conv2D is supported only on the channel axis of a 4-D "
            f"tensor.")
    channels = layer.input_shape[-1]
    gamma = layer.gamma.numpy() if layer.scale else np.ones(channels)
    beta = layer.beta.numpy() if layer.center else np.zeros(channels)
    scale = gamma / np.sqrt(layer.moving_variance.numpy() + layer.epsilon)
    offset = beta - layer.moving_mean.numpy() * scale
    return _affine(layer.name, scale, offset, trainable=layer.trainable,
                   input_shape=layer.input_shape)


def _fix_input_range(qat):
    """Sets the input quantizers' range to `INPUT_RANGE`.

    tfmot's input quantizer keeps the running min and max of every batch seen,
    starting at [0, 0]; started at [0, 255] it stays there for pixel inputs.
    """
    for layer in qat.layers:
        if type(layer).__name__ != "QuantizeLayer":
            continue
        for weight in layer.weights:
            if weight.name.endswith("_min:0"):
                weight.assign(INPUT_RANGE[0])
            elif weight.name.endswith("_max:0"):
                weight.assign(INPUT_RANGE[1])
