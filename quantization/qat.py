"""Quantization-aware training (QAT) of the ResNet family with tfmot's 8-bit scheme.

Weights and activations are fake-quantized where the int8 TFLite kernels round
them (Jacob et al. 2018, arXiv 1712.05877), so that a short fine-tuning learns
to absorb the rounding. The float model passed in is left untouched:

    >>> from quantization.qat import load_qat_model, quantize_model
    >>> qat = quantize_model(model, calibration_images=dataset.calibration_images(256))
    >>> qat.compile(keras.optimizers.SGD(1e-3, momentum=0.9),
    ...             "sparse_categorical_crossentropy", metrics=["accuracy"])
    >>> qat.fit(dataset.train(128), epochs=2)
    >>> qat.save("qat.keras")
    >>> qat = load_qat_model("qat.keras")

Fine-tuning is plain `compile` + `fit` on the returned model, in float32 (the
fake-quant ops have no float16 kernels); use a learning rate 10-100x below
the float run's. The QAT model converts with
`export.tflite.convert(qat, "int8_qat")`.

tfmot's default scheme already places the fake-quant ops as TFLite fuses:
Conv2D+BatchNorm(+ReLU) fold into one conv with one output quantizer, an Add
followed by a ReLU is quantized once after the ReLU, Concatenate once after
the concatenation; ZeroPadding2D, Cropping2D and MaxPooling2D pass their
input's quantization through (in either data_format: they only move values).
What it does not cover is handled here, in the QAT model only:

- The input `Normalization` (fixed mean and variance) becomes the equivalent
  frozen 1x1 `DepthwiseConv2D`, output quantized. Quantizing only the
  Normalization's output would leave its subtract and multiply in float in
  TFLite (DEQUANTIZE, SUB, MUL, QUANTIZE), which an int8-only runtime such as
  the Edge TPU cannot run; as a depthwise conv it is one int8 op whose one
  weight per channel the converter quantizes exactly.
- A BatchNormalization that no conv precedes (the pre-activation BNs of the
  v2 nets) becomes the 1x1 `DepthwiseConv2D` of its inference-time affine
  map, for the same reason. Its moving statistics are thereby frozen during
  fine-tuning, as Krishnamoorthi (arXiv 1806.08342, sec. 3.2) recommends for
  QAT; its scale and offset stay trainable.
- The option-A shortcut's fixed subsampling conv (`resnet_keras.blocks.SUBSAMPLE`)
  gets the same treatment as those affine maps: output quantized, kernel
  left to the converter (exact per channel for its 0/1 weights) and frozen.
- The input quantizer's range is set to exactly [0, 255], the raw pixels the
  models take, so that the int8 model's uint8 input has scale 1 and zero
  point 0 and a uint8 image is fed without rounding.
- Quantizer ranges start where they belong instead of tfmot's [-6, 6]:
  weight ranges from the weights, activation ranges from the float model on
  `calibration_images`. tfmot moves activation ranges by a moving average of
  decay 0.999, too slowly for a fine-tuning of a few hundred steps.
- A `caffe` input's BGR reordering (three crops and a concatenation) is
  folded into conv1's kernel first (`resnet_keras.models.fold_channel_reversal`),
  as `export.tflite.convert` does for the float variants.
- tfmot 0.8.1 writes `.keras` files that it cannot read back (tfmot PR
  #1123, open): `quantize_model` returns the model rebuilt from its config,
  as `load_model` rebuilds it (`_rebuilt`), and `quantize_scope` loads the
  input `QuantizeLayer` as a subclass that marks itself built.

Only tfmot's public extension points are used (`QuantizeConfig`,
`quantize_annotate_layer`, `quantize_scope`, the wrappers' own training-mode
call) except the `QuantizeLayer` subclass, which tfmot does not export.
Checked against tensorflow-model-optimization 0.8.1 (pinned in
requirements.txt); tests/test_qat.py fails when a newer tfmot makes a
workaround unnecessary.
"""

import contextlib
import os
import warnings

import numpy as np
import tensorflow_model_optimization as tfmot

# Not exported by tfmot's public API; needed only to subclass (see QuantizeLayer).
from tensorflow_model_optimization.python.core.quantization.keras import quantize_layer

from datasets.input_pipeline import check_pixels
from resnet_keras.backend import keras
from resnet_keras.blocks import SUBSAMPLE
from resnet_keras.models import fold_channel_reversal
from rundir import model_files

INPUT_RANGE = (0.0, 255.0)

_qk = tfmot.quantization.keras
# Activations that Default8BitActivationQuantizeConfig accepts.
_SUPPORTED_ACTIVATIONS = ("relu", "relu6", "swish", "gelu", "linear", "softmax", "sigmoid",
                          "tanh")
# Layers tfmot's Conv2DBatchNorm* transforms fold into a preceding conv.
_FOLDING_CONVS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)


class AffineQuantizeConfig(_qk.QuantizeConfig):
    """Quantizes a fixed 1x1 conv's output, not its kernel (affine maps, option-A shortcuts).

    tfmot would fake-quantize the depthwise kernel per tensor (one scale for
    all channels); left alone, the converter quantizes it per channel, which
    is exact for one weight per channel. Since no weight is quantized, the
    wrapper takes no variable of the layer as its own, so a frozen layer
    (the input normalization) stays frozen: tfmot's wrapper reports every
    weight it quantizes as trainable (quantize_wrapper.py:114-121 in tfmot
    0.8.1). The output is quantized as tfmot's default 8-bit scheme
    quantizes an activation, so its variables keep tfmot's names
    (`post_activation_min`, `post_activation_max`).
    """

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return [(layer.activation, _qk.quantizers.MovingAverageQuantizer(
            num_bits=8, per_axis=False, symmetric=False, narrow_range=False))]

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        (layer.activation,) = quantize_activations

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {}


class QuantizeLayer(quantize_layer.QuantizeLayer):
    """tfmot's input QuantizeLayer, marked built after `build`.

    In tfmot 0.8.1, `QuantizeLayer.build` (quantize_layer.py:56-66) neither
    calls `Layer.build` nor sets `built`. Loading a `.keras` file first calls
    `build` through `Layer.build_from_config` (tf_keras
    base_layer.py:2384-2386, from serialization_lib.py:730), which relies on
    `build` setting `built`; the functional model then builds the layer a
    second time and finds 5 variables for the 3 saved (tfmot PR #1123, open).
    Only a subclass can change `build`, and tfmot's public API does not
    export the class, hence the import from its `python.core` path.
    `test_tfmot_quantize_layer_still_needs_the_subclass` fails once tfmot
    fixes this. The class keeps tfmot's name because `.keras` weight paths
    derive from it.
    """

    def build(self, input_shape):
        super().build(input_shape)
        self.built = True


@contextlib.contextmanager
def quantize_scope():
    """The custom-object scope in which QAT models are saved and loaded.

    tfmot's `quantize_scope`, with `QuantizeLayer` replaced by the fixed
    class above and `AffineQuantizeConfig` added; `load_qat_model` uses it.

    Example:

    >>> with quantize_scope():
    ...     model = keras.models.load_model("qat.keras", safe_mode=True)
    """
    # The inner scope wins: custom_object_scope updates one global dict.
    with _qk.quantize_scope(), keras.utils.custom_object_scope(
            {"QuantizeLayer": QuantizeLayer, "AffineQuantizeConfig": AffineQuantizeConfig}):
        yield


def quantize_model(model, *, calibration_images=None, batch_size=32):
    """Returns a QAT copy of a float model, ready to compile and fine-tune.

    Args:
        model: a built functional or Sequential tf_keras model, e.g. from
            `resnet_keras.build_model`; any registry network is supported.
            Its input is expected to be raw pixels in `INPUT_RANGE`.
        calibration_images: `(N, H, W, 3)` float pixels, a few hundred
            training images; optional but recommended. Each activation
            quantizer's range then starts at the float model's min/max on
            these images instead of tfmot's [-6, 6], which its moving average
            (decay 0.999) needs thousands of steps to leave. Without them a
            short fine-tuning clips, e.g., the `caffe`-normalized input
            (about [-124, 152]): resnet18 on digits, one QAT epoch, reached
            19% top-1 without and 97% with 256 calibration images. A warning
            says so when they are left out.
        batch_size: int, batch size of the calibration pass.

    Returns:
        A new tf_keras `Model` whose layers are wrapped by tfmot
        (`QuantizeWrapperV2`, prefix `quant_`), with the float model's
        weights. Layer names keep the float model's names after the prefix;
        a `caffe` model's `preprocess_channel*`/`preprocess_bgr` layers are
        folded away.

    Raises:
        ValueError: the model is not a functional or Sequential model, a
            layer cannot be quantized (the message names the layer and its
            class), or the calibration images do not fit the model's input.
    """
    # tf_keras exports no Functional class; tfmot's quantize_apply makes the
    # same check (quantize.py:351 in tfmot 0.8.1).
    if not isinstance(model, keras.Model) or not (
            isinstance(model, keras.Sequential) or model._is_graph_network):  # noqa: SLF001
        raise ValueError(
            f"quantize_model needs a functional or Sequential tf_keras model, got "
            f"{type(model).__name__}; subclassed models cannot be cloned layer by layer.")
    model = fold_channel_reversal(model)
    producers = _producers(model)
    registry = _qk.default_8bit.Default8BitQuantizeRegistry()
    replacements = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.layers.Normalization):
            replacements[layer.name] = _normalization_as_affine(layer)
        elif layer.name.endswith(SUBSAMPLE):
            replacements[layer.name] = layer  # already the fixed 1x1 conv it should be
        elif (isinstance(layer, keras.layers.BatchNormalization)
              and not _folds_into_conv(model, producers[layer.name])):
            replacements[layer.name] = _batch_norm_as_affine(layer)
        elif not isinstance(layer, keras.layers.BatchNormalization):
            _check_supported(layer, registry)

    def annotate(layer):
        if layer.name in replacements:
            return _qk.quantize_annotate_layer(replacements[layer.name], AffineQuantizeConfig())
        return _qk.quantize_annotate_layer(layer)

    annotated = keras.models.clone_model(model, clone_function=annotate)
    with quantize_scope():
        qat = _rebuilt(_qk.quantize_apply(annotated))
    _fix_input_range(qat)
    _init_weight_ranges(qat)
    if calibration_images is not None:
        _init_activation_ranges(qat, model, calibration_images, batch_size=batch_size)
    else:
        warnings.warn(
            "quantize_model without calibration_images: activation ranges start at tfmot's "
            "[-6, 6] and move slowly; pass a few hundred training images "
            "(Dataset.calibration_images(256)) unless fine-tuning for thousands of steps.",
            stacklevel=2)
    return qat


def load_qat_model(path, *, allow_unsafe=False):
    """Loads a QAT model saved with `model.save(path)` (`.keras` format).

    Args:
        path: str or path-like, a `.keras` file written by a QAT model.
        allow_unsafe: bool, as `rundir.model_files.load_model`.

    Returns:
        The QAT tf_keras `Model`, compiled if it was saved compiled.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: the file is not a whole, safe `.keras` model
            (`rundir.model_files.load_model`).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"QAT model file {path} does not exist.")
    with quantize_scope():
        return model_files.load_model(path, allow_unsafe=allow_unsafe)


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
        if not isinstance(layer, quantize_layer.QuantizeLayer):
            continue
        for weight in layer.weights:
            if weight.name.endswith("_min:0"):
                weight.assign(INPUT_RANGE[0])
            elif weight.name.endswith("_max:0"):
                weight.assign(INPUT_RANGE[1])


def _rebuilt(qat):
    """The QAT model rebuilt from its config, as `load_model` rebuilds it.

    In tfmot 0.8.1, `quantize_apply` wraps layers that are already built
    (quantize.py:454-455, called from 499-500), so `QuantizeWrapperV2.build`
    lists the wrapped layer's variables among the wrapper's own
    (quantize_wrapper.py:255) and the quantized kernel a second time
    (quantize_wrapper.py:121). A wrapper rebuilt from its config wraps an
    unbuilt layer and lists only the quantized kernel. tf_keras saves and
    loads each layer's own variables by position (base_layer.py:3620-3650),
    so the model `quantize_apply` returns writes `.keras` files that
    `load_model` rejects (tfmot PR #1123, open). Rebuilding is tfmot's own
    clone-and-copy (quantize.py:368-372).
    `test_tfmot_quantize_apply_still_needs_the_rebuild` fails once tfmot
    fixes the layout. Must run inside `quantize_scope`.
    """
    rebuilt = keras.models.clone_model(qat)
    rebuilt.set_weights(qat.get_weights())
    return rebuilt


def _init_weight_ranges(qat):
    """Sets each weight quantizer's range as its first training step would.

    tfmot's weight quantizers start at [-6, 6] and take the weights' range
    only in a training step, so a QAT model evaluated or converted before any
    `fit` would round, e.g., the conv kernels to a few levels. Each wrapper
    that quantizes a weight is called once in training mode, which lets its
    own quantizer (LastValueQuantizer) set the range; the weights' range does
    not depend on the input. The activation quantizers that this call moves
    (by tfmot's moving average) are put back.
    """
    activation_ranges = [(variable, variable.numpy())
                         for _, _, *variables in _range_variables(qat) for variable in variables]
    for layer in qat.layers:
        if (isinstance(layer, _qk.QuantizeWrapper)
                and layer.quantize_config.get_weights_and_quantizers(layer.layer)):
            layer(np.zeros((1, *layer.input_shape[1:]), np.float32), training=True)
    for variable, value in activation_ranges:
        variable.assign(value)


# Quantizer variables (`<kind>_min`, `<kind>_max`) of tfmot's wrappers, and
# which float tensor each one quantizes: the wrapped layer's output, or for
# `pre_activation` (e.g. the softmax Dense) its output before the activation.
_RANGE_KINDS = ("output", "post_activation", "pre_activation")


def _range_variables(qat):
    """[(float layer name, kind, min variable, max variable)] of the QAT model."""
    found = []
    for layer in qat.layers:
        if not isinstance(layer, _qk.QuantizeWrapper):
            continue
        by_name = {w.name.split("/")[-1].split(":")[0]: w for w in layer.weights}
        for kind in _RANGE_KINDS:
            if f"{kind}_min" in by_name:
                found.append((layer.layer.name, kind, by_name[f"{kind}_min"],
                              by_name[f"{kind}_max"]))
    return found


def _pre_activation(layer):
    """The layer applied again to its input with a linear activation."""
    config = {**layer.get_config(), "activation": "linear", "name": f"{layer.name}_logits"}
    linear = type(layer).from_config(config)
    output = linear(layer.input)
    linear.set_weights(layer.get_weights())
    return output


def _init_activation_ranges(qat, model, images, *, batch_size):
    """Sets every activation quantizer's range to the float model's min/max."""
    images = check_pixels("calibration_images", images, model.input_shape[1:])
    targets = _range_variables(qat)
    outputs = [_pre_activation(model.get_layer(name)) if kind == "pre_activation"
               else model.get_layer(name).output for name, kind, _, _ in targets]
    probe = keras.Model(model.inputs, outputs)
    low = np.full(len(targets), np.inf)
    high = np.full(len(targets), -np.inf)
    for start in range(0, len(images), batch_size):
        values = probe(images[start:start + batch_size], training=False)
        values = values if isinstance(values, list) else [values]
        low = np.minimum(low, [float(np.min(v)) for v in values])
        high = np.maximum(high, [float(np.max(v)) for v in values])
    for (_, _, min_var, max_var), lo, hi in zip(targets, low, high):
        # TFLite needs 0 inside every range (exact zero padding, ReLU).
        min_var.assign(np.full(min_var.shape, min(lo, 0.0), np.float32))
        max_var.assign(np.full(max_var.shape, max(hi, 0.0), np.float32))
