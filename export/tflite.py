"""Converts a trained model into `.tflite` files, one per quantization variant.

The closed set of variants follows tensorflow/models' export_tflite_lib; each
file has a static batch-1 input of raw RGB pixels, the shape the Edge TPU
compiler and phones expect:

    >>> from export import tflite
    >>> data = tflite.convert(model, "int8", calibration_images=images[:256])
    >>> paths = tflite.export_variants(model, out_dir="runs/x", qat_model=qat,
    ...                                calibration_images=images[:256])

- `float32`: the float graph as is.
- `fp16`: float16 weights, float32 compute where the runtime prefers it.
- `dynamic`: int8 weights, activations quantized on the fly (no calibration).
- `int8`: full-integer post-training quantization calibrated on
  `calibration_images`; int8 ops only, `uint8` or `int8` input and output.
- `int8_qat`: full integer from a quantization-aware-trained model
  (`quantization.qat.quantize_model`), same integer input and output.
- `int8_float_io`: `int8`'s calibrated integer graph with float32 input and
  output, for clients that feed only float32 (MediaPipe Tasks on Android's GPU).
- `int16x8`, `int4_weights`: made by litert-quantizer from the `float32`
  file (export/quantizer.py); float input and output.

`configured_converter` is the one place a converter variant becomes settings,
as `convert_tflite_model` is in export_tflite_lib; the int8 diagnosis
(report/diagnose.py) takes its converter from there too.
"""

import logging
import os
import time

from datasets.input_pipeline import check_pixels
from export import quantizer, tflite_file
from export.variants import (
    CALIBRATED_VARIANTS,
    FLOAT_IO_VARIANTS,
    INTEGER_VARIANTS,
    QUANTIZER_VARIANTS,
    VARIANTS,
    check_io_dtype,
    check_variants,
)
from resnet_keras.backend import tf
from resnet_keras.models import fold_channel_reversal

_QAT_LAYER_TYPES = ("QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer")

logger = logging.getLogger(__name__)


def convert(model, variant, *, calibration_images=None, io_dtype="uint8"):
    """Converts a tf_keras model into one `.tflite` variant.

    Args:
        model: the trained float model; for `int8_qat`, the QAT model from
            `quantization.qat.quantize_model` (fine-tuned).
        variant: one of `VARIANTS`.
        calibration_images: for `int8` and `int16x8` only: array-like `(N, H, W, 3)` of
            float pixels in [0, 255] (the model's input shape), e.g.
            `export.run.calibration_set(dataset)`. All N images are used.
        io_dtype: `uint8` (default, the Edge TPU convention) or `int8`: the
            input and output type of the integer variants; ignored by the
            float ones. With `int8_qat` a uint8 input has scale 1, zero point 0.

    Returns:
        bytes, the `.tflite` flatbuffer, batch size 1.

    Raises:
        ValueError: an unknown variant or io_dtype (the message lists the
            valid ones), missing or malformed calibration images (the message
            gives the expected shape), a QAT model for a float variant or a
            float model for `int8_qat`, or an integer variant in which some
            ops stayed float.
    """
    if variant in QUANTIZER_VARIANTS:
        check_variants([variant])
        _check_model_kind(model, variant)
        if variant in CALIBRATED_VARIANTS:
            calibration_images = check_calibration_images(calibration_images, model, variant)
        return quantizer.quantize(convert(model, "float32"), variant,
                                  calibration_images=calibration_images)
    data = configured_converter(model, variant, calibration_images=calibration_images,
                                io_dtype=io_dtype).convert()
    if variant in INTEGER_VARIANTS + FLOAT_IO_VARIANTS:
        _check_integer_only(data, variant)
    return data


def configured_converter(model, variant, *, calibration_images=None, io_dtype="uint8",
                         integer_only=True):
    """The TFLiteConverter of one variant, set up but not run: where a variant becomes settings.

    `convert` runs it; report/diagnose.py hands the int8 one to TFLite's
    QuantizationDebugger, which calibrates and quantizes it itself.

    Args:
        model, variant, calibration_images, io_dtype: as `convert`.
        integer_only: bool, for `int8`: True (the exported file) restricts the
            target ops to int8 and makes the input and output `io_dtype`;
            False keeps the default target ops and float input and output, so
            that ops the QuantizationDebugger is told to leave out stay float.

    Returns:
        A `tf.lite.TFLiteConverter` with a static batch-1 input named `input`.

    Raises:
        ValueError: as `convert`, before anything is traced; also
            `integer_only=False` for a variant other than `int8`, or a
            variant litert-quantizer makes (`QUANTIZER_VARIANTS`).
    """
    check_variants([variant])
    if variant in QUANTIZER_VARIANTS:
        raise ValueError(f"Variant {variant} is made by litert-quantizer from the float32 "
                         f"file (export.quantizer), not by the converter.")
    check_io_dtype(io_dtype)
    if not integer_only and variant != "int8":
        raise ValueError(f"integer_only=False applies to variant int8 only, got {variant!r}.")
    _check_model_kind(model, variant)
    if variant != "int8_qat":  # a QAT model was folded by quantize_model
        model = fold_channel_reversal(model)
    calibrated = variant in ("int8", *FLOAT_IO_VARIANTS)
    if calibrated:
        calibration_images = check_calibration_images(calibration_images, model, variant)

    converter = _converter(model)
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if calibrated:
        converter.representative_dataset = lambda: ([image[None]] for image in calibration_images)
    if variant in FLOAT_IO_VARIANTS:  # integer ops only; the input and output stay float32
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if variant in INTEGER_VARIANTS and integer_only:
        if variant == "int8":
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # int8_qat cannot also ask for TFLITE_BUILTINS_INT8: TF 2.21's converter
        # then demands a representative dataset. `_check_integer_only` checks
        # the result instead.
        converter.inference_input_type = getattr(tf, io_dtype)
        converter.inference_output_type = getattr(tf, io_dtype)
    return converter


def export_variants(model, *, out_dir, variants=VARIANTS, qat_model=None,
                    calibration_images=None, io_dtype="uint8"):
    """Writes `<model name>_<variant>.tflite` for each variant into `out_dir`.

    Logs one line per file (logger `export.tflite`, level INFO): variant,
    seconds taken, size and path.

    Args:
        model: the trained float model (its name names the files).
        out_dir: folder to write into; created if missing.
        variants: iterable of names from `VARIANTS`.
        qat_model: the QAT model; required for `int8_qat`.
        calibration_images: required for `int8` and `int16x8`; see `convert`.
        io_dtype: `uint8` or `int8`; see `convert`.

    Returns:
        dict {variant: path of the written file}, in the order given.

    Raises:
        ValueError: as `convert`, checked for every variant before any
            conversion starts; also `int8_qat` without `qat_model`.
    """
    variants = check_variants(variants)
    check_io_dtype(io_dtype)
    if "int8_qat" in variants and qat_model is None:
        raise ValueError("Variant int8_qat needs qat_model, the model from "
                         "quantization.qat.quantize_model after fine-tuning.")
    calibrated = [v for v in variants if v in CALIBRATED_VARIANTS]
    if calibrated:
        calibration_images = check_calibration_images(calibration_images, model, calibrated[0])

    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    float_data = None  # the float32 file, which the quantizer's variants start from
    for variant in variants:
        start = time.perf_counter()
        if variant in QUANTIZER_VARIANTS:
            float_data = float_data or convert(model, "float32")
            data = quantizer.quantize(float_data, variant,
                                      calibration_images=calibration_images)
        else:
            source = qat_model if variant == "int8_qat" else model
            data = convert(source, variant, calibration_images=calibration_images,
                           io_dtype=io_dtype)
            if variant == "float32":
                float_data = data
        path = os.path.join(out_dir, f"{model.name}_{variant}.tflite")
        with open(path, "wb") as f:
            f.write(data)
        paths[variant] = path
        logger.info("%-12s %6.1f s  %8.3f MB  %s", variant, time.perf_counter() - start,
                    len(data) / 1e6, path)
    return paths


def check_calibration_images(images, model, variant="int8"):
    """Returns `images` as float32 `(N, H, W, C)` checked against `model`'s input.

    Raises:
        ValueError: as `datasets.input_pipeline.check_pixels` (None, empty, wrong
            rank or shape, or not finite); the message gives the expected shape.
    """
    if images is None:
        shape = ", ".join(str(d) for d in model.input_shape[1:])
        raise ValueError(f"Variant {variant} needs calibration_images: float pixels in [0, 255] "
                         f"of shape (N, {shape}), a few hundred training images.")
    return check_pixels("calibration_images", images, model.input_shape[1:])


def _is_qat_model(model):
    return any(type(layer).__name__ in _QAT_LAYER_TYPES for layer in model.layers)


def _check_model_kind(model, variant):
    if variant == "int8_qat" and not _is_qat_model(model):
        raise ValueError(f"Variant int8_qat needs the QAT model from "
                         f"quantization.qat.quantize_model; {model.name!r} has no "
                         f"quantization wrappers.")
    if variant != "int8_qat" and _is_qat_model(model):
        raise ValueError(f"Variant {variant} converts the float model; {model.name!r} is a "
                         f"QAT model, which converts as int8_qat.")


def _converter(model):
    """A TFLiteConverter for `model` with a static batch-1 input named `input`.

    Converting a plain concrete function whose owner only tracks the
    variables skips the Keras SavedModel serialization, which traces every
    layer and takes 3-5x longer than the conversion itself.
    """
    spec = tf.TensorSpec((1, *model.input_shape[1:]), tf.float32, name="input")
    module = tf.Module()
    module.variables_to_save = list(model.variables)
    module.serve = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    return tf.lite.TFLiteConverter.from_concrete_functions(
        [module.serve.get_concrete_function()], module)


def _check_integer_only(data, variant):
    """Raises if an op of the converted model computes in float.

    The QUANTIZE and DEQUANTIZE ops at a float-I/O variant's ends convert, not compute.
    """
    graph = tflite_file.parse(data, source=f"the converted {variant} model")
    ends = {"QUANTIZE", "DEQUANTIZE"} if variant in FLOAT_IO_VARIANTS else set()
    floating = [f"{op.name} (op {op.index})" for op in graph.ops
                if op.name not in ends and any(t >= 0 and graph.tensors[t].dtype == "FLOAT32"
                                               for t in op.inputs + op.outputs)]
    if floating:
        raise ValueError(
            f"Variant {variant} is not integer-only: {len(floating)} ops compute in float: "
            f"{', '.join(floating[:10])}{' ...' if len(floating) > 10 else ''}. A layer's "
            f"output has no quantization range; see quantization.qat for what it rewrites.")
