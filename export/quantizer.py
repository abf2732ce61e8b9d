"""The variants made by Google's LiteRT quantizer from the float32 file (litert-quantizer).

litert-quantizer (the renamed ai-edge-quantizer) is the maintained successor
of the converter's quantization, which Google's edge documentation now calls
the legacy path. It rewrites a float `.tflite` from a recipe; export/tflite.py
hands it the float32 file of the same model:

    >>> from export import quantizer
    >>> data = quantizer.quantize(float32_bytes, "int16x8", calibration_images=images)

- `int16x8`: recipe `static_wi8_ai16`, int8 weights per channel and int16
  activations (symmetric), calibrated on `calibration_images`.
- `int4_weights`: recipe `dynamic_wi4_afp32`, int4 weights per channel on
  the ops the quantizer's policy lists for it (`CONV_2D`, `FULLY_CONNECTED`,
  `EMBEDDING_LOOKUP`); everything else stays float, and activations are
  quantized on the fly by the runtime. `int4_ops` reads which ops got them.

`selective_int8` is the recipe way to keep chosen layers in float: static
int8 (`static_wi8_ai8`) everywhere but the ops a regex names, which its
`no_quantize` algorithm leaves alone; report/run.py measures it beside the
converter's selective path (report/diagnose.py).

`compare` is the quantizer's validator (what `Quantizer.validate()` runs) on
any two files of one model: each tensor of one against the tensor of the same
name in the other, on the same images. It is the one measure of per-layer
error (report/diagnose.py ranks the layers by it), and it scores the
converter's files as well as the quantizer's, since both keep the float32
file's tensor names.

The package is imported only here and only when one of these variants is made,
so the rest of the project runs without it.
"""

import contextlib
import os
import re
import warnings

import numpy as np

from export import tflite_file
from export.variants import QUANTIZER_VARIANTS, check_variants

# The quantizer's recipe function per variant (litert_quantizer.recipe).
RECIPES = {"int16x8": "static_wi8_ai16", "int4_weights": "dynamic_wi4_afp32"}
# Our models take raw pixels; the converter's int8 files fix the input at
# scale 1.0 on 0..255. The quantizer would take the input's range from the
# calibration images (a maximum of about 251 on digits), so that a brighter
# pixel overflows; its range is set to the whole pixel range instead.
PIXEL_RANGE = (0.0, 255.0)


def quantize(float_data, variant, *, calibration_images=None):
    """Quantizes a float32 `.tflite` into one of `QUANTIZER_VARIANTS` with litert-quantizer.

    Args:
        float_data: bytes of the model's `float32` variant (export/tflite.py).
        variant: `int16x8` or `int4_weights`.
        calibration_images: for `int16x8`: float32 `(N, H, W, 3)` pixels in
            [0, 255], already checked (export.tflite.check_calibration_images).

    Returns:
        bytes, the quantized flatbuffer (float32 input and output, raw pixels).

    Raises:
        ValueError: a variant that is not the quantizer's, or `int16x8`
            without calibration images.
        ImportError: litert-quantizer is not installed; the message says how.
    """
    check_variants([variant])
    if variant not in QUANTIZER_VARIANTS:
        raise ValueError(f"Variant {variant!r} is made by the TFLite converter; litert-quantizer "
                         f"makes {', '.join(QUANTIZER_VARIANTS)}.")
    litert_quantizer, recipe = _package()
    quantizer = litert_quantizer.Quantizer(bytearray(float_data),
                                           getattr(recipe, RECIPES[variant])())
    data = _quantize(quantizer, float_data, calibration_images, what=f"Variant {variant}")
    # The quantizer makes the model's input and output int16 themselves; MediaPipe
    # Tasks and Android apps feed float32 or uint8, so the ends become float32.
    return tflite_file.with_float_io(data) if variant == "int16x8" else data


def selective_int8(float_data, *, calibration_images, keep_float):
    """Static int8 by litert-quantizer with the ops of the named Keras layers left in float.

    Args:
        float_data: bytes of the model's `float32` variant.
        calibration_images: float32 `(N, H, W, 3)` pixels in [0, 255].
        keep_float: Keras layer names (report/diagnose.py's `keras_layers`):
            every op whose output tensor comes from one of them stays float.

    Returns:
        bytes, the quantized flatbuffer (float32 input and output).

    Raises:
        ValueError: an empty `keep_float`, or no calibration images.
        ImportError: as `quantize`.
    """
    keep_float = [keep_float] if isinstance(keep_float, str) else list(keep_float)
    if not keep_float:
        raise ValueError("keep_float is empty: name the Keras layers to keep in float.")
    litert_quantizer, recipe = _package()
    quantizer = litert_quantizer.Quantizer(bytearray(float_data), recipe.static_wi8_ai8())
    # TFLite names an op's output `<model>/<layer>/<tf op>`, fused ops joined by ';'.
    quantizer.update_quantization_recipe(
        regex="|".join(f"/{re.escape(name)}/" for name in keep_float), operation_name="*",
        algorithm_key="no_quantize")
    return _quantize(quantizer, float_data, calibration_images, what="Selective int8")


def _quantize(quantizer, float_data, calibration_images, *, what):
    """Calibrates where the recipe needs it (input fixed on `PIXEL_RANGE`), then quantizes."""
    with _quiet():
        calibration = None
        if quantizer.need_calibration:
            if calibration_images is None:
                raise ValueError(f"{what} needs calibration_images: float pixels in [0, 255], "
                                 f"a few hundred training images.")
            signature, input_name, input_tensor = _signature(float_data)
            calibration = quantizer.calibrate(
                {signature: _samples(input_name, calibration_images)})
            calibration[input_tensor] = _pixel_range(calibration[input_tensor])
        result = quantizer.quantize(calibration, enable_progress_report=False)
    return bytes(result.quantized_model)


def compare(reference_data, target_data, images):
    """Each tensor of `target_data` against its namesake in `reference_data`, on `images`.

    litert-quantizer's validator runs both files on every image, with LiteRT
    keeping every intermediate tensor; a quantized tensor is dequantized and
    a float input quantized with the file's own parameters, so the converter's
    integer-only files (uint8 in and out) compare as they are.

    Args:
        reference_data: bytes of the float32 file.
        target_data: bytes of a quantized file of the same model.
        images: float32 `(N, H, W, 3)` pixels in [0, 255], already checked.

    Returns:
        {tensor name: {"mse": mean squared error, "snr": signal power over
        noise power}} for every tensor the two files share but the input and
        the constants, each averaged over the images; the output is included.

    Raises:
        ImportError: as `quantize`.
    """
    _package()
    from litert_quantizer import model_validator
    from litert_quantizer.utils.validation_utils import ValidationErrorMetric

    signature, input_name, _ = _signature(reference_data)
    with _quiet():
        result = model_validator.compare_model(
            bytes(reference_data), bytes(target_data),
            {signature: _samples(input_name, images)},
            error_metrics=[ValidationErrorMetric.MSE, ValidationErrorMetric.SNR],
            num_threads=os.cpu_count() or 1)
    tensors = result.get_signature_comparison_result(signature)
    return {**tensors.intermediate_tensors, **tensors.output_tensors}


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        # The quantizer's interpreters keep every intermediate tensor by design;
        # LiteRT warns that this is meant for debugging, which no caller can act on.
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
        yield


def _samples(input_name, images):
    return [{input_name: np.asarray(image, np.float32)[None]} for image in images]


def int4_ops(data):
    """{op name: count} of the ops whose weights the file stores as int4.

    Args:
        data: bytes of a `.tflite` file.
    """
    graph = tflite_file.parse(data)
    counts = {}
    for op in graph.ops:
        if any(t >= 0 and graph.tensors[t].is_constant and graph.tensors[t].dtype == "INT4"
               for t in op.inputs):
            counts[op.name] = counts.get(op.name, 0) + 1
    return counts


def _package():
    try:
        import litert_quantizer
        from litert_quantizer import recipe
    except ImportError as error:
        raise ImportError(f"Variants {', '.join(QUANTIZER_VARIANTS)} need litert-quantizer: "
                          f"pip install -r requirements.txt ({error}).") from error
    return litert_quantizer, recipe


def _signature(float_data):
    """(signature key, its input's name, the input tensor's name) of a one-input model."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=bytes(float_data))
    signature, inputs = next(iter(interpreter.get_signature_list().items()))
    (input_name,) = inputs["inputs"]
    runner = interpreter.get_signature_runner(signature)
    index = runner.get_input_details()[input_name]["index"]
    tensor = next(d["name"] for d in interpreter.get_tensor_details() if d["index"] == index)
    return signature, input_name, tensor


def _pixel_range(qsv):
    """The input's calibration statistics with its range widened to `PIXEL_RANGE`."""
    low, high = PIXEL_RANGE
    return {**qsv, "min": np.full_like(qsv["min"], low), "max": np.full_like(qsv["max"], high)}
