"""An Android bundle for a .tflite model: the model, its labels and a model card.

The card is read from the file itself (input and output shapes, types and
quantization), so the app code in docs/android.md never hard-codes them.
Our models take raw RGB pixels: the normalization is a layer inside the model.

    >>> bundle = android.write_bundle("runs/x/resnet20_int8.tflite", out_dir="runs/x/android",
    ...                               labels=dataset.class_names, report_entry=entry)
"""

import hashlib
import json
import pathlib
import shutil

from export import tflite_file

PIXELS = "raw RGB 0..255, HWC, no normalization: it is inside the model"
CARD_FILE = "model_card.json"
LABELS_FILE = "labels.txt"
# An input scale this close to 1 with zero point 0 means a byte is the pixel.
_RAW_BYTES_TOLERANCE = 1e-3
_REPORT_FIELDS = ("variant", "top1", "top5", "top1_delta_points", "agreement", "size_bytes")


def _tensor_card(tensor):
    scale = tensor.scales[0] if tensor.quantized else None
    zero_point = tensor.zero_points[0] if tensor.quantized else None
    return {"name": tensor.name, "shape": list(tensor.shape), "dtype": tensor.dtype.lower(),
            "scale": scale, "zero_point": zero_point}


def _input_card(tensor):
    card = _tensor_card(tensor)
    scale, zero_point, dtype = card["scale"], card["zero_point"], card["dtype"]
    card["layout"] = "NHWC"
    card["pixels"] = PIXELS
    if scale is None:
        card["feed_raw_bytes"] = False
        card["encode"] = f"write each R, G, B value 0..255 as {dtype}"
        return card
    card["feed_raw_bytes"] = bool(dtype == "uint8" and zero_point == 0
                                  and abs(scale - 1.0) < _RAW_BYTES_TOLERANCE)
    if card["feed_raw_bytes"]:
        card["encode"] = "write each R, G, B byte as is (the input scale is ~1, zero point 0)"
    else:
        card["encode"] = (f"write round(value / {scale:.9g}) + {zero_point} as {dtype} "
                          f"for each R, G, B value 0..255")
    return card


def _output_card(tensor):
    card = _tensor_card(tensor)
    if card["scale"] is None:
        card["decode"] = "the values are class probabilities"
    else:
        card["decode"] = (f"probability = {card['scale']:.9g} * (q - {card['zero_point']}) "
                          f"for each {card['dtype']} value q")
    return card


def _check_labels(labels, classes, path):
    if isinstance(labels, (str, bytes, pathlib.Path)):
        raise ValueError("labels must be a list of class names in class-index order, "
                         f"not {type(labels).__name__} {labels!r}.")
    labels = [str(label) for label in labels]
    if len(labels) != classes:
        raise ValueError(f"{len(labels)} labels given for a model with {classes} output "
                         f"classes ({path}); pass one label per class, in class-index order.")
    bad = [label for label in labels if not label.strip() or "\n" in label or "\r" in label]
    if bad:
        raise ValueError(f"labels must be non-empty and on one line (labels.txt holds one "
                         f"per line), got {bad!r}.")
    return labels


def _report_card(entry, size_bytes, path):
    if entry is None:
        return None
    reported = entry.get("size_bytes")
    if reported is not None and reported != size_bytes:
        raise ValueError(f"report_entry describes a {reported}-byte file but {path} has "
                         f"{size_bytes} bytes; pass the entry of this file.")
    card = {field: entry.get(field) for field in _REPORT_FIELDS}
    latency = entry.get("latency_ms") or {}
    card["latency_median_ms"] = {threads: stats.get("median_ms")
                                 for threads, stats in latency.items() if stats}
    edgetpu = entry.get("edgetpu")
    card["edgetpu_compatible"] = edgetpu.get("compatible") if edgetpu else None
    return card


def write_bundle(tflite_path, *, out_dir, labels, report_entry=None):
    """Writes `<name>.tflite`, `labels.txt` and `model_card.json` into a folder.

    Args:
        tflite_path: str or Path, a .tflite file (its stem names the bundle's
            model file).
        out_dir: str or Path, the folder to write (created if missing).
        labels: sequence of str, one class name per model output, in
            class-index order.
        report_entry: dict, this file's entry of report.json's `variants`
            (accuracy, size, latency, Edge TPU check), or None.

    Returns:
        The bundle folder as a Path. The card holds `model_file`,
        `labels_file`, `size_bytes`, `sha256`, `num_classes`, `labels`,
        `input` (`name`, `shape`, `dtype`, `scale`, `zero_point`, `layout`,
        `pixels`, `feed_raw_bytes`, `encode`), `output` (`name`, `shape`,
        `dtype`, `scale`, `zero_point`, `decode`) and `report` (the entry's
        `variant`, `top1`, `top5`, `top1_delta_points`, `agreement`,
        `size_bytes`, `latency_median_ms`, `edgetpu_compatible`, or None).

    Raises:
        FileNotFoundError: no file at `tflite_path`.
        ValueError: the file is not a TFLite model, the model has more than
            one input or output, the labels do not match its classes, or the
            report entry is for a file of another size.
    """
    source = pathlib.Path(tflite_path)
    graph = tflite_file.read(source)
    inputs = [graph.tensors[t] for t in graph.inputs]
    outputs = [graph.tensors[t] for t in graph.outputs]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"{source} has {len(inputs)} inputs and {len(outputs)} outputs; "
                         f"an image classifier bundle needs one of each.")
    classes = int(outputs[0].shape[-1])
    labels = _check_labels(labels, classes, source)

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_file = out_dir / f"{source.stem}.tflite"
    if not (model_file.exists() and model_file.samefile(source)):
        shutil.copyfile(source, model_file)
    data = model_file.read_bytes()
    (out_dir / LABELS_FILE).write_text("\n".join(labels) + "\n", encoding="utf-8")
    card = {
        "model_file": model_file.name,
        "labels_file": LABELS_FILE,
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "num_classes": classes,
        "labels": labels,
        "input": _input_card(inputs[0]),
        "output": _output_card(outputs[0]),
        "report": _report_card(report_entry, len(data), source),
    }
    (out_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return out_dir
