"""The LiteRT runtime of the exported files: predictions, accuracy, latency, XNNPACK placement.

Files run through `ai_edge_litert` (XNNPACK by default), one image per
invoke: the exported files have a static batch of 1, as on a device. The
export stage checks its files with it, the report measures them with it.

    >>> from export import runtime
    >>> scores = runtime.predict_tflite("runs/x/resnet20_int8.tflite", images)
    >>> runtime.evaluate_tflite("runs/x/resnet20_int8.tflite", images, labels)
    {'top1': 0.975, 'top5': 1.0}
"""

import collections
import importlib.metadata
import os
import time

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from export import tflite_file

LITERT_VERSION = importlib.metadata.version("ai-edge-litert")


def load_interpreter(path, *, num_threads=None):
    """Loads a `.tflite` file into a LiteRT interpreter with tensors allocated.

    Args:
        path: str or path-like.
        num_threads: int, CPU threads for the kernels; None lets LiteRT choose.

    Returns:
        An `ai_edge_litert.interpreter.Interpreter`.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: as `export.tflite_file.read` (not a TFLite model,
            truncated or corrupt), or LiteRT cannot load it.
    """
    path = os.fspath(path)
    tflite_file.read(path)
    try:
        interpreter = Interpreter(model_path=path, num_threads=num_threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"{path} is not a valid TFLite model (truncated or corrupt?); "
                         f"LiteRT says: {str(e).strip()}") from None
    return interpreter


def predict_tflite(path, images, *, num_threads=None):
    """Scores of a `.tflite` classifier for each image.

    Args:
        path: a `.tflite` file, or an interpreter from `load_interpreter`.
        images: array-like `(N, H, W, 3)`, uint8 or float pixels in [0, 255].
        num_threads: int or None, as `load_interpreter` (ignored when an
            interpreter is given).

    Returns:
        np.ndarray float32 `(N, classes)`: the model's outputs, dequantized
        for integer models.

    Raises:
        ValueError: the images do not have the model's input shape.
    """
    interpreter = (path if isinstance(path, Interpreter)
                   else load_interpreter(path, num_threads=num_threads))
    source = interpreter.get_input_details()[0]
    target = interpreter.get_output_details()[0]
    images = np.asarray(images)
    expected = tuple(source["shape"][1:])
    if images.ndim != 4 or images.shape[1:] != expected:
        raise ValueError(f"images must have shape (N, {', '.join(map(str, expected))}) for "
                         f"this model; got {images.shape}.")
    inputs = _quantize(images, source)
    outputs = np.empty((len(images), *target["shape"][1:]), np.float32)
    for i, x in enumerate(inputs):
        interpreter.set_tensor(source["index"], x[None])
        interpreter.invoke()
        outputs[i] = _dequantize(interpreter.get_tensor(target["index"])[0], target)
    return outputs


def evaluate_tflite(path, images, labels, *, reference_predictions=None, num_threads=None):
    """Accuracy of a `.tflite` classifier, and its agreement with a reference.

    Args:
        path: a `.tflite` file or an interpreter.
        images: `(N, H, W, 3)` pixels in [0, 255].
        labels: `(N,)` int class indices.
        reference_predictions: optional `(N, classes)` scores of the model the
            file came from (e.g. Keras's `model.predict`).
        num_threads: int or None.

    Returns:
        dict with `top1` and `top5` (None when there are 5 classes or fewer)
        as fractions; with a reference also `agreement` (fraction of images
        with the same top-1 class) and `max_abs_diff` (largest absolute
        difference of the scores).

    Raises:
        ValueError: images and labels differ in number, or as `predict_tflite`.
    """
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(images):
        raise ValueError(f"Got {len(images)} images but {len(labels)} labels.")
    return classification_metrics(predict_tflite(path, images, num_threads=num_threads),
                                  labels, reference_predictions=reference_predictions)


def classification_metrics(scores, labels, *, reference_predictions=None):
    """top-1, top-5 (None with 5 classes or fewer) and, given a reference, agreement.

    Args:
        scores: `(N, classes)` scores of any model, e.g. `predict_tflite` output.
        labels: `(N,)` int class indices.
        reference_predictions: optional `(N, classes)` scores to compare with.

    Returns:
        dict as `evaluate_tflite`.
    """
    labels = np.asarray(labels).reshape(-1)
    result = {"top1": float(np.mean(scores.argmax(-1) == labels)), "top5": None}
    if scores.shape[-1] > 5:
        top5 = np.argsort(-scores, axis=-1)[:, :5]
        result["top5"] = float(np.mean((top5 == labels[:, None]).any(-1)))
    if reference_predictions is not None:
        reference = np.asarray(reference_predictions, np.float32)
        result["agreement"] = float(np.mean(scores.argmax(-1) == reference.argmax(-1)))
        result["max_abs_diff"] = float(np.abs(scores - reference).max())
    return result


def measure_latency(paths, *, num_threads, runs=50, warmup=5, rounds=5):
    """Wall-clock time of single-image invokes of one or more files, timed in turns.

    All files are loaded first; then in each of `rounds` rounds every file runs
    `runs // rounds` timed invokes in a row. Drift in the machine's load (other
    processes, clock changes) thus touches every file alike, and the ratio of
    two files' medians holds better than when each file is timed alone.

    Args:
        paths: dict {name: `.tflite` path}.
        num_threads: int, CPU threads (1 for the single-core figure), or None.
        runs: int, timed invokes per file (at least `rounds`).
        warmup: int, untimed invokes per file first (XNNPACK packs weights lazily).
        rounds: int, turns taken over the files.

    Returns:
        dict {name: dict(median_ms, min_ms, max_ms)}.
    """
    interpreters = {}
    for name, path in paths.items():
        interpreter = load_interpreter(path, num_threads=num_threads)
        source = interpreter.get_input_details()[0]
        interpreter.set_tensor(source["index"], _quantize(np.random.default_rng(0).uniform(
            0, 255, source["shape"]).astype(np.float32), source))
        for _ in range(warmup):
            interpreter.invoke()
        interpreters[name] = interpreter
    rounds = max(1, min(rounds, runs))
    times = {name: [] for name in paths}
    for turn in range(rounds):
        for name, interpreter in interpreters.items():
            for _ in range(runs // rounds + (turn < runs % rounds)):
                start = time.perf_counter()
                interpreter.invoke()
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: {"median_ms": float(np.median(t)), "min_ms": float(np.min(t)),
                   "max_ms": float(np.max(t))} for name, t in times.items()}


def xnnpack_placement(path):
    """Which of a file's ops LiteRT hands to the XNNPACK delegate, and which it runs itself.

    The default delegate replaces each run of supported ops with one
    `DELEGATE` node. An op belongs to a delegated partition when it lies on a
    path from that node's inputs to its outputs (partitions are convex).

    Args:
        path: a `.tflite` file, or an interpreter from `load_interpreter`.

    Returns:
        dict with `ops` (ops in the file), `delegated` (ops XNNPACK runs),
        `partitions` (delegate nodes) and `not_delegated` ({op name: count}).
    """
    interpreter = path if isinstance(path, Interpreter) else load_interpreter(path)
    nodes = tflite_file.runtime_nodes(interpreter)
    original = [node for node in nodes if node.name != "DELEGATE"]
    producers, consumers = collections.defaultdict(list), collections.defaultdict(list)
    for node in original:
        for t in node.outputs:
            producers[t].append(node.index)
        for t in node.inputs:
            consumers[t].append(node.index)

    def reached(tensors, edges, follow):
        """Nodes reached from `tensors` along `edges`, going on through their `follow` tensors."""
        seen, todo = set(), list(tensors)
        while todo:
            for index in edges.get(todo.pop(), ()):
                if index not in seen:
                    seen.add(index)
                    todo.extend(getattr(nodes[index], follow))
        return seen

    delegates = [node for node in nodes if node.name == "DELEGATE"]
    delegated = set()
    for node in delegates:
        delegated |= (reached(node.inputs, consumers, "outputs")
                      & reached(node.outputs, producers, "inputs"))
    missing = collections.Counter(node.name for node in original if node.index not in delegated)
    return {"ops": len(original), "delegated": len(delegated), "partitions": len(delegates),
            "not_delegated": dict(sorted(missing.items()))}


def _quantize(images, detail):
    """Pixels as the input tensor's dtype (exact for uint8 scale 1, zero point 0)."""
    dtype = detail["dtype"]
    if not np.issubdtype(dtype, np.integer):
        return images.astype(dtype)
    scale, zero_point = detail["quantization"]
    if scale == 0:  # an integer input that is not quantized
        return images.astype(dtype)
    if images.dtype == dtype and scale == 1.0 and zero_point == 0:
        return images
    info = np.iinfo(dtype)
    q = np.round(images.astype(np.float32) / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def _dequantize(values, detail):
    if not np.issubdtype(detail["dtype"], np.integer):
        return values.astype(np.float32)
    scale, zero_point = detail["quantization"]
    if scale == 0:
        return values.astype(np.float32)
    return (values.astype(np.float32) - zero_point) * scale
