"""Which ops of a `.tflite` Android's GPU delegate would take, by TensorFlow Lite's analyzer.

`tf.lite.experimental.Analyzer.analyze(..., gpu_compatibility=True)` runs the
delegate's own op check (`CheckGpuDelegateCompatibility`, the rules the GPU
delegate applies when it partitions a graph) on every op, and prints one
`GPU COMPATIBILITY WARNING: <reason>` line under each op it would leave to
the CPU. It has no structured result, so `check` captures that text and reads
the main subgraph's op lines and their warnings; a text it cannot read is an
error rather than a model reported as compatible.

    >>> from export import gpu
    >>> gpu.check("runs/x/export/resnet20_int16x8.tflite")["fallback_ops"]
    {'QUANTIZE': 1, ...}
"""

import contextlib
import io
import re

from resnet_keras.backend import tf

_OP = re.compile(r"^\s+Op#(\d+) ([^(]+)\(")
_WARNING = "GPU COMPATIBILITY WARNING: "
_MAIN_TENSORS = "Tensors of Subgraph#0"


def check(path):
    """The GPU delegate's verdict on each op of the file's main subgraph.

    Args:
        path: str or path-like, a `.tflite` file.

    Returns:
        dict: `checker` (the analyzer and its TensorFlow version), `ops`
        (count), `gpu_ops` (ops the delegate would take), `compatible` (True
        when it takes all of them), `fallback_ops` ({op name: count} of those
        it leaves to the CPU) and `fallback` (one dict per such op: `index`,
        `op`, `reason`, the analyzer's words).

    Raises:
        RuntimeError: the analyzer's text lists no op, so its format has
            changed and this reader needs updating.
    """
    with open(path, "rb") as f:
        data = f.read()
    return parse(analyzer_text(data), source=str(path))


def analyzer_text(data):
    """The model analyzer's report on `data` (bytes of a .tflite) with the GPU check on."""
    text = io.StringIO()
    # The analyzer prints its report (Python's print) and returns None.
    with contextlib.redirect_stdout(text):
        tf.lite.experimental.Analyzer.analyze(model_content=data, gpu_compatibility=True)
    return text.getvalue()


def parse(text, *, source="<model>"):
    """`check`'s dict from the analyzer's text; see `check`.

    Raises:
        RuntimeError: as `check`.
    """
    ops, fallback = [], []
    for line in text.split(_MAIN_TENSORS, 1)[0].splitlines():
        match = _OP.match(line)
        if match:
            ops.append((int(match.group(1)), match.group(2).strip()))
        elif line.startswith(_WARNING) and ops and not line[len(_WARNING):].startswith(
                "Subgraph#"):
            index, name = ops[-1]
            fallback.append({"index": index, "op": name,
                             "reason": line[len(_WARNING):].strip()})
    if not ops:
        raise RuntimeError(f"TensorFlow Lite's model analyzer listed no op of {source}; its "
                           f"output format has changed and export/gpu.py needs updating.")
    counts = {}
    for entry in fallback:
        counts[entry["op"]] = counts.get(entry["op"], 0) + 1
    return {"checker": f"tf.lite.experimental.Analyzer (TensorFlow {tf.__version__})",
            "ops": len(ops), "gpu_ops": len(ops) - len(fallback), "compatible": not fallback,
            "fallback_ops": counts, "fallback": fallback}
