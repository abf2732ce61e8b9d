"""The export stage's closed sets, with no TensorFlow: its variants, integer I/O types, defaults.

Model Garden's export_tflite_lib keeps the same kind of closed set: anything
else is a `ValueError` that lists the valid values. The job's configuration
(`job.config`) and `python -m export` take their choices from here.
"""

import typing
from typing import Literal

Variant = Literal["float32", "fp16", "dynamic", "int8", "int8_qat", "int8_float_io", "int16x8",
                  "int4_weights"]
IODtype = Literal["uint8", "int8"]

VARIANTS: tuple[str, ...] = typing.get_args(Variant)
IO_DTYPES: tuple[str, ...] = typing.get_args(IODtype)
# The variants whose input and output are integers of `IODtype`.
INTEGER_VARIANTS = ("int8", "int8_qat")
# int8 inside, float32 input and output (a QUANTIZE and a DEQUANTIZE op at the ends): the
# int8 graph for clients that feed only float32 tensors, such as MediaPipe Tasks' GPU path,
# whose image converter writes float32 whatever the model's input type.
FLOAT_IO_VARIANTS = ("int8_float_io",)
# The variants litert-quantizer makes from the float32 file (export/quantizer.py);
# the others come from tf.lite.TFLiteConverter (export/tflite.py).
QUANTIZER_VARIANTS = ("int16x8", "int4_weights")
# The variants calibrated on training images (`CALIBRATION_SIZE` of them).
CALIBRATED_VARIANTS = ("int8", "int8_float_io", "int16x8")

# Training images drawn for int8 calibration and QAT's starting ranges; the
# TFLite guide suggests 100-500 for stable min/max ranges.
CALIBRATION_SIZE = 300


def check_variants(variants):
    """`variants` as a list, or a ValueError that names the unknown ones and lists `VARIANTS`."""
    variants = list(variants)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        given = (f"Unknown variant {', '.join(map(repr, unknown))}" if unknown
                 else "No variant given")
        raise ValueError(f"{given}; valid: {', '.join(VARIANTS)}.")
    return variants


def check_io_dtype(io_dtype):
    """`io_dtype`, or a ValueError that lists `IO_DTYPES`."""
    if io_dtype not in IO_DTYPES:
        raise ValueError(f"Unknown io_dtype {io_dtype!r}; valid: {', '.join(IO_DTYPES)}.")
    return io_dtype
