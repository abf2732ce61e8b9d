"""An Android bundle for a .tflite model: the model, its labels and a model card.

The card is read from the file itself (input and output shapes, types and
quantization, its TFLite metadata), so the app code in docs/android.md never
hard-codes them. Our models take raw RGB pixels: the normalization is a layer
inside the model. A file without metadata gets it here (export/metadata.py),
so MediaPipe Tasks' ImageClassifier reads the labels from the model itself.

    >>> bundle = android.write_bundle("runs/x/resnet20_int8.tflite", out_dir="runs/x/android",
    ...                               labels=dataset.class_names, report_entry=entry)
"""

import hashlib
import json
import pathlib
import shutil

from export import metadata, tflite_file

PIXELS = "raw RGB 0..255, HWC, no normalization: it is inside the model"
CARD_FILE = "model_card.json"
LABELS_FILE = metadata.LABELS_FILE
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


def write_bundle(tflite_path, *, out_dir, labels, report_entry=None, target=None):
    """Writes `<name>.tflite`, `labels.txt` and `model_card.json` into a folder.

    The model file is a copy of `tflite_path`; where that file has no TFLite
    metadata yet, the copy gets it (with `labels`), the original is left as is.

    Args:
        tflite_path: str or Path, a .tflite file (its stem names the bundle's
            model file).
        out_dir: str or Path, the folder to write (created if missing).
        labels: sequence of str, one class name per model output, in
            class-index order.
        report_entry: dict, this file's entry of report.json's `variants`
            (accuracy, size, latency, Edge TPU check), or None.
        target: dict, what the bundle's deployment target was decided on
            (`export.bundles.target_card`), or None.

    Returns:
        The bundle folder as a Path. The card holds `model_file`,
        `labels_file`, `size_bytes`, `sha256`, `num_classes`, `labels`,
        `metadata` (the model file's TFLite metadata: `name`, `version`,
        `packed_files`), `input` (`name`, `shape`, `dtype`, `scale`, `zero_point`, `layout`,
        `pixels`, `feed_raw_bytes`, `encode`), `output` (`name`, `shape`,
        `dtype`, `scale`, `zero_point`, `decode`) and `report` (the entry's
        `variant`, `top1`, `top5`, `top1_delta_points`, `agreement`,
        `size_bytes`, `latency_median_ms`, `edgetpu_compatible`, or None) and
        `target` (as given, or None).

    Raises:
        FileNotFoundError: no file at `tflite_path`.
        ValueError: the file is not a TFLite model, the model has more than
            one input or output, the labels do not match its classes or the
            labels in its metadata, or the report entry is for a file of
            another size.
    """
    source = pathlib.Path(tflite_path)
    graph = tflite_file.read(source)
    image, scores = metadata.classifier_tensors(graph)
    classes = int(scores.shape[-1])
    labels = metadata.check_labels(labels, classes, source)
    measured_size = source.stat().st_size  # the file report_entry describes
    packed = metadata.read_metadata(source)
    if packed is not None and packed["labels"] != labels:
        raise ValueError(f"{source} carries the labels {packed['labels']!r} in its metadata, "
                         f"not the {labels!r} given; pass the labels it was exported with.")

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_file = out_dir / f"{source.stem}.tflite"
    if not (model_file.exists() and model_file.samefile(source)):
        shutil.copyfile(source, model_file)
    if packed is None:
        metadata.write(model_file, labels=labels, version="unknown: added by the bundle")
    packed = metadata.read_metadata(model_file)
    data = model_file.read_bytes()
    (out_dir / LABELS_FILE).write_text("\n".join(labels) + "\n", encoding="utf-8")
    card = {
        "model_file": model_file.name,
        "labels_file": LABELS_FILE,
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "num_classes": classes,
        "labels": labels,
        "metadata": {key: packed[key] for key in ("name", "version", "packed_files")},
        "input": _input_card(image),
        "output": _output_card(scores),
        "report": _report_card(report_entry, measured_size, source),
        "target": target,
    }
    (out_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return out_dir
