"""Per-layer diagnosis of an int8 file, and selective int8.

`layer_errors` ranks the layers of a quantized file by litert-quantizer's
validator (export.quantizer.compare, what `Quantizer.validate()` runs): every
tensor of the quantized file against the float32 file's tensor of the same
name, both run on the same images. The error accumulates from the input on, and
is given in units of the tensor's quantization step (RMSE / scale): rounding
alone gives 1/sqrt(12) ~ 0.29 at one tensor, much more points at a clipped or
badly calibrated range. `selective_int8` keeps the worst layers in float and
quantizes the rest with the converter.

    >>> layers = diagnose.layer_errors(model, float32_bytes, int8_bytes, calibration_images)
    >>> tflite = diagnose.selective_int8(model, calibration_images,
    ...                                  denylist=diagnose.pick_denylist(layers, count=2))
"""

import contextlib
import math
import warnings

from datasets.input_pipeline import check_pixels
from export import quantizer, tflite, tflite_file
from resnet_keras.backend import tf

# The error of ideal round-to-nearest quantization, in quantization steps:
# the standard deviation of a uniform distribution on [-0.5, 0.5].
ROUNDING_RMSE_PER_SCALE = 1.0 / math.sqrt(12.0)
# resnet_keras names its input normalization layers `preprocess_*` (models.py).
_PREPROCESSING_PREFIX = "preprocess_"
# Ops that only convert types: not layers one could keep in float.
_CONVERSIONS = ("QUANTIZE", "DEQUANTIZE")


@contextlib.contextmanager
def _quiet_debugger():
    """Silences warnings from inside the debugger that the caller cannot act on:
    the deprecation of the tf.lite.Interpreter it builds, and the converter's
    note on input statistics (the calibration supplies them)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        yield


def _debugger(model, calibration_images, *, denylist=None):
    """A QuantizationDebugger over the int8 variant's converter (calibrates once)."""
    def calibration():
        for image in calibration_images:
            yield [image[None]]

    # The int8 file's own converter, but with the default target ops and float
    # input and output: a denylisted op must be able to stay float.
    converter = tflite.configured_converter(model, "int8", calibration_images=calibration_images,
                                            integer_only=False)
    options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=list(denylist) if denylist else None)
    with _quiet_debugger():
        return tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=calibration, debug_options=options)


def _keras_layers(tensor_name, model):
    """Keras layer names inside a (possibly fused) TFLite tensor name."""
    names = {layer.name for layer in model.layers}
    found = []
    for part in tensor_name.split(";"):
        pieces = part.split("/")
        if len(pieces) > 1 and pieces[0] == model.name and pieces[1] in names \
                and pieces[1] not in found:
            found.append(pieces[1])
    return found


def _finite_or_none(value):
    value = float(value)
    return value if math.isfinite(value) else None


def layer_errors(model, float_data, quantized_data, images, *, top_k=10):
    """Ranks the layers of a quantized file by their error against the float32 file.

    Args:
        model: the float tf_keras model both files were converted from; only
            its name and layer names are read, to name each tensor's layers.
        float_data: bytes of its `float32` file.
        quantized_data: bytes of a quantized file of it (the `int8` variant).
        images: float32 array (N, H, W, 3) in [0, 255], the images both files
            run on (the calibration images: the range int8 was fitted to).
        top_k: int, how many of the worst layers to return; None for all.

    Returns:
        A list of dicts, worst first by `rmse_per_scale`: `rank` (1-based),
        `tensor_name` (the TFLite tensor, usable in `selective_int8`'s
        denylist), `keras_layers` (layer names fused into it), `op_name` (the
        op that writes it), `tensor_index`, `num_elements`,
        `mean_squared_error`, `rmse`, `snr_db` (the validator's signal-to-noise
        ratio in decibels), `scale`, `zero_point` and `rmse_per_scale`. A
        float tensor has no scale: its `scale`, `zero_point` and
        `rmse_per_scale` are None and it ranks last.

    Raises:
        ValueError: images of the wrong shape, or `top_k` below 1.
    """
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}.")
    images = check_pixels("images", images, model.input_shape[1:])
    errors = quantizer.compare(float_data, quantized_data, images)
    graph = tflite_file.parse(quantized_data, source="the quantized file")
    writers = {t: op.name for op in graph.ops for t in op.outputs}
    layers = []
    for tensor in graph.tensors:
        if tensor.name not in errors:
            continue
        mse = _finite_or_none(errors[tensor.name]["mse"])
        snr = _finite_or_none(errors[tensor.name]["snr"])
        rmse = math.sqrt(mse) if mse is not None and mse >= 0 else None
        # Activations are quantized per tensor: one scale.
        scale = tensor.scales[0] if len(tensor.scales) == 1 and tensor.scales[0] else None
        layers.append({
            "tensor_name": tensor.name,
            "keras_layers": _keras_layers(tensor.name, model),
            "op_name": writers.get(tensor.index),
            "tensor_index": tensor.index,
            "num_elements": math.prod(tensor.shape),
            "mean_squared_error": mse,
            "rmse": rmse,
            "snr_db": 10 * math.log10(snr) if snr else None,
            "scale": scale,
            "zero_point": tensor.zero_points[0] if scale else None,
            "rmse_per_scale": rmse / scale if rmse is not None and scale else None,
        })
    layers.sort(key=lambda layer: (layer["rmse_per_scale"] is None,
                                   -(layer["rmse_per_scale"] or 0.0)))
    layers = layers[:top_k] if top_k is not None else layers
    return [{"rank": rank, **layer} for rank, layer in enumerate(layers, start=1)]


def pick_denylist(layers, *, count=3, min_rmse_per_scale=None, skip_preprocessing=True):
    """The tensor names to keep in float: the worst `count` layers.

    Args:
        layers: the list returned by `layer_errors` (worst first).
        count: int, at most this many layers.
        min_rmse_per_scale: float, only layers with at least this error;
            None takes the top `count` whatever their error.
        skip_preprocessing: leave out the input normalization
            (`preprocess_*` layers). Integer pixels minus a mean of 127.5 are
            half-integers, so its int8 output is always half a step off and
            tops the ranking; keeping it in float gains nothing, because the
            first convolution requantizes its input anyway.

    A tensor no Keras layer is named in (the model's output, which the
    converter calls `StatefulPartitionedCall:0`) is never picked: neither
    `selective_int8` nor the quantizer's recipe can name it.

    Returns:
        A list of tensor names for `selective_int8(denylist=...)`.

    Raises:
        ValueError: `count` below 1.
    """
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}.")
    ranked = [layer for layer in layers
              if layer.get("rmse_per_scale") is not None and layer.get("keras_layers")]
    if skip_preprocessing:
        ranked = [layer for layer in ranked if not all(
            name.startswith(_PREPROCESSING_PREFIX) for name in layer["keras_layers"])]
    if min_rmse_per_scale is not None:
        ranked = [layer for layer in ranked if layer["rmse_per_scale"] >= min_rmse_per_scale]
    return [layer["tensor_name"] for layer in ranked[:count]]


def _op_output_names(tflite_bytes):
    """The output tensor names of every op that is not a type conversion, in op order."""
    graph = tflite_file.parse(tflite_bytes, source="the debugger's quantized model")
    names = [graph.tensors[t].name for op in graph.ops if op.name not in _CONVERSIONS
             for t in op.outputs if t >= 0]
    return list(dict.fromkeys(names))


def selective_int8(model, calibration_images, *, denylist):
    """Int8 PTQ with the named layers kept in float (mixed precision).

    Quantizes like the plain int8 variant, then leaves the denylisted ops in
    float32 with QUANTIZE/DEQUANTIZE around them. The model's input and output
    stay float32 (raw pixels in, probabilities out): a mixed model cannot run
    on the Edge TPU anyway, and float IO keeps it a drop-in for Android.

    Args:
        model: a float tf_keras model taking raw pixels in [0, 255].
        calibration_images: float32 array (N, H, W, 3) in [0, 255].
        denylist: tensor names from `layer_errors` (`tensor_name`) or Keras
            layer names; each must name a quantized op of this model.

    Returns:
        The .tflite file as bytes.

    Raises:
        ValueError: an empty denylist, or a name that matches no quantized op
            (the message lists valid names).
    """
    denylist = [denylist] if isinstance(denylist, str) else list(denylist)
    if not denylist:
        raise ValueError("denylist is empty; export.tflite.convert(model, 'int8') gives the "
                         "plain int8 model.")
    calibration_images = check_pixels("calibration_images", calibration_images,
                                      model.input_shape[1:])
    debugger = _debugger(model, calibration_images)
    valid = _op_output_names(debugger.get_nondebug_quantized_model())
    nodes = []
    for name in denylist:
        # A Keras layer name stands for every tensor it was fused into.
        matches = [name] if name in valid else [
            v for v in valid if name in _keras_layers(v, model)]
        if not matches:
            shown = "\n  ".join(valid[:40])
            raise ValueError(f"denylist entry {name!r} names no quantized op of "
                             f"{model.name}; valid tensor names:\n  {shown}")
        nodes.extend(m for m in matches if m not in nodes)
    with _quiet_debugger():
        debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=nodes)
    return debugger.get_nondebug_quantized_model()
