"""TFLite metadata for an image classifier: what MediaPipe Tasks and the Task Library read.

`write` stores a `ModelMetadata` flatbuffer (tensorflow/tflite-support's
metadata_schema.fbs, identifier `M001`) in the model's `TFLITE_METADATA`
entry and packs `labels.txt` into the file as a zip appended after the
flatbuffer, the schema's way of carrying associated files. Our models take raw
RGB 0..255 with the normalization inside, so the input's normalization is mean
0, std 1. The metadata is built by hand with `flatbuffers`: the maintained
writers cannot be installed beside TensorFlow 2.21 (see docs/android.md).

    >>> from export import metadata
    >>> metadata.write("runs/x/export/resnet20_int8.tflite", labels=dataset.class_names,
    ...                name="resnet20_int8", version="resnet20-digits-20260101")
    >>> metadata.read_metadata("runs/x/export/resnet20_int8.tflite")["labels"][:2]
    ['0', '1']
"""

import io
import os
import pathlib
import zipfile

import flatbuffers
import numpy as np
from flatbuffers.table import Table

from export import tflite_file

ENTRY_NAME = "TFLITE_METADATA"
LABELS_FILE = "labels.txt"
# The schema's file identifier and the oldest parser that reads every field we
# write (ImageProperties, NormalizationOptions and TENSOR_AXIS_LABELS are all 1.0.0).
_IDENTIFIER = b"M001"
_MIN_PARSER_VERSION = "1.0.0"
# pyproject.toml declares no license; say so rather than invent one.
LICENSE = "none declared by the resnet-keras project; ask the model's author"
AUTHOR = "resnet-keras"
# Enum values and union tags of metadata_schema.fbs.
_RGB = 1
_FEATURE_PROPERTIES, _IMAGE_PROPERTIES = 1, 2
_NORMALIZATION_OPTIONS = 1
_TENSOR_AXIS_LABELS = 2
_COLOR_SPACES = {0: "UNKNOWN", 1: "RGB", 2: "GRAYSCALE"}
_FILE_TYPES = {0: "UNKNOWN", 1: "DESCRIPTIONS", 2: "TENSOR_AXIS_LABELS",
               3: "TENSOR_VALUE_LABELS"}


def check_labels(labels, classes, source):
    """`labels` as a list of str, one per class, each fit for one line of labels.txt.

    Raises:
        ValueError: a string instead of a list, the wrong count, or an empty or
            multi-line label; the message says which and what to pass.
    """
    if isinstance(labels, (str, bytes, pathlib.Path)):
        raise ValueError("labels must be a list of class names in class-index order, "
                         f"not {type(labels).__name__} {labels!r}.")
    labels = [str(label) for label in labels]
    if len(labels) != classes:
        raise ValueError(f"{len(labels)} labels given for a model with {classes} output "
                         f"classes ({source}); pass one label per class, in class-index order.")
    bad = [label for label in labels if not label.strip() or "\n" in label or "\r" in label]
    if bad:
        raise ValueError(f"labels must be non-empty and on one line (labels.txt holds one "
                         f"per line), got {bad!r}.")
    return labels


def classifier_tensors(graph):
    """The (input, output) `tflite_file.Tensor` of a one-image, one-score-vector model.

    Raises:
        ValueError: more than one input or output, or an input that is not
            `(1, height, width, 3)`.
    """
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ValueError(f"{graph.source} has {len(graph.inputs)} inputs and "
                         f"{len(graph.outputs)} outputs; an image classifier needs one of each.")
    image, scores = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    if len(image.shape) != 4 or image.shape[-1] != 3:
        raise ValueError(f"{graph.source} takes input of shape {list(image.shape)}; an image "
                         f"classifier takes (1, height, width, 3) RGB pixels.")
    return image, scores


def add_metadata(data, *, labels, name, version, description=None, source="<bytes>"):
    """A copy of a .tflite model carrying classifier metadata and its labels.

    Args:
        data: bytes of a .tflite file (metadata already there is replaced).
        labels: sequence of str, one class name per output, in class-index order.
        name: str, the model's name, e.g. `resnet20_int8`.
        version: str, which training run it comes from.
        description: str, or None for one saying what the input and output are.
        source: str, what to call the data in error messages.

    Returns:
        bytes: the flatbuffer with a `TFLITE_METADATA` entry, then a zip holding
        `labels.txt`.

    Raises:
        ValueError: not a TFLite model, not an image classifier, or labels that
            do not fit it (see `check_labels`).
    """
    graph = tflite_file.parse(data, source=source)
    image, scores = classifier_tensors(graph)
    labels = check_labels(labels, int(scores.shape[-1]), source)
    if description is None:
        description = (f"Classifies a {image.shape[1]}x{image.shape[2]} RGB image into "
                       f"{len(labels)} classes; takes raw pixels 0..255 ({image.dtype.lower()}"
                       f"), the normalization is inside the model.")
    buffer = _model_metadata(name=name, version=version, description=description,
                             score_description=_score_description(scores))
    model = tflite_file.with_metadata_entry(data, ENTRY_NAME, buffer)
    archive = io.BytesIO(model)
    with zipfile.ZipFile(archive, "a", compression=zipfile.ZIP_STORED) as packed:
        packed.writestr(LABELS_FILE, "\n".join(labels) + "\n")
    return archive.getvalue()


def write(path, *, labels, name=None, version, description=None):
    """Adds classifier metadata and labels.txt to a .tflite file in place.

    Args:
        path: str or path-like, the .tflite file.
        labels, version, description: as `add_metadata`.
        name: str, default the file's stem.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: as `add_metadata`.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TFLite file {path} does not exist.")
    data = add_metadata(path.read_bytes(), labels=labels, name=name or path.stem,
                        version=version, description=description, source=str(path))
    path.write_bytes(data)


def read_metadata(path):
    """What a classifier's metadata says, or None where the file has none.

    Args:
        path: str or path-like, a .tflite file.

    Returns:
        None, or a dict: `name`, `description`, `version`, `author`,
        `license`, `min_parser_version`, `input` (`name`, `color_space`,
        `mean`, `std`, `min`, `max`), `output` (`name`, `label_file`,
        `label_file_type`), `packed_files` (names in the appended zip) and
        `labels` (the label file's lines, or None where it is not packed).
    """
    data = pathlib.Path(os.fspath(path)).read_bytes()
    buffer = tflite_file.metadata_entry(data, ENTRY_NAME)
    if buffer is None:
        return None
    if buffer[4:8] != _IDENTIFIER:
        raise ValueError(f"{path}: the {ENTRY_NAME} entry is not a metadata flatbuffer "
                         f"(identifier {buffer[4:8]!r}, expected {_IDENTIFIER!r}).")
    root = _root(buffer)
    subgraph = _tables(root, 3)[0]
    image, scores = _tables(subgraph, 2)[0], _tables(subgraph, 3)[0]
    content = _table(image, 3)
    units = [_table(unit, 1) for unit in _tables(image, 4) if _scalar(unit, 0, "Uint8")
             == _NORMALIZATION_OPTIONS]
    stats = _table(image, 5)
    label_file = next(iter(_tables(scores, 6)), None)
    packed = _packed_files(data)
    label_name = _string(label_file, 0) if label_file else None
    return {
        **{key: _string(root, slot) for key, slot in (
            ("name", 0), ("description", 1), ("version", 2), ("author", 4), ("license", 5),
            ("min_parser_version", 7))},
        "input": {"name": _string(image, 0),
                  "color_space": _COLOR_SPACES.get(_scalar(_table(content, 1), 0, "Int8")),
                  "mean": _floats(units[0], 0) if units else None,
                  "std": _floats(units[0], 1) if units else None,
                  "min": _floats(stats, 1), "max": _floats(stats, 0)},
        "output": {"name": _string(scores, 0), "label_file": label_name,
                   "label_file_type": _FILE_TYPES.get(_scalar(label_file, 2, "Int8"))
                   if label_file else None},
        "packed_files": sorted(packed),
        "labels": packed[label_name].decode("utf-8").splitlines()
        if label_name in packed else None,
    }


def _score_description(scores):
    if not scores.quantized:
        return "Probability of each class, in labels.txt order."
    return (f"Probability of each class, in labels.txt order, as {scores.dtype.lower()}: "
            f"{scores.scales[0]:.9g} * (q - {scores.zero_points[0]}).")


def _model_metadata(*, name, version, description, score_description):
    """The ModelMetadata flatbuffer; slot numbers follow metadata_schema.fbs field order."""
    b = flatbuffers.Builder(1024)
    mean = b.CreateNumpyVector(np.zeros(3, np.float32))
    std = b.CreateNumpyVector(np.ones(3, np.float32))
    normalization = _build(b, {0: ("offset", mean), 1: ("offset", std)})
    unit = _build(b, {0: ("uint8", _NORMALIZATION_OPTIONS), 1: ("offset", normalization)})
    image_properties = _build(b, {0: ("int8", _RGB)})
    image_content = _build(b, {0: ("uint8", _IMAGE_PROPERTIES), 1: ("offset", image_properties)})
    low = b.CreateNumpyVector(np.zeros(3, np.float32))
    high = b.CreateNumpyVector(np.full(3, 255, np.float32))
    image_stats = _build(b, {0: ("offset", high), 1: ("offset", low)})
    image = _build(b, {
        0: ("offset", b.CreateString("image")),
        1: ("offset", b.CreateString("RGB pixels 0..255, height x width x 3.")),
        3: ("offset", image_content), 4: ("offset", _vector(b, [unit])),
        5: ("offset", image_stats)})
    label_file = _build(b, {
        0: ("offset", b.CreateString(LABELS_FILE)),
        1: ("offset", b.CreateString("One class name per line, in class-index order.")),
        2: ("int8", _TENSOR_AXIS_LABELS)})
    feature = _build(b, {})
    score_content = _build(b, {0: ("uint8", _FEATURE_PROPERTIES), 1: ("offset", feature)})
    score_low = b.CreateNumpyVector(np.zeros(1, np.float32))
    score_high = b.CreateNumpyVector(np.ones(1, np.float32))
    score_stats = _build(b, {0: ("offset", score_high), 1: ("offset", score_low)})
    scores = _build(b, {
        0: ("offset", b.CreateString("probability")),
        1: ("offset", b.CreateString(score_description)),
        3: ("offset", score_content), 5: ("offset", score_stats),
        6: ("offset", _vector(b, [label_file]))})
    subgraph = _build(b, {2: ("offset", _vector(b, [image])),
                          3: ("offset", _vector(b, [scores]))})
    root = _build(b, {
        0: ("offset", b.CreateString(name)), 1: ("offset", b.CreateString(description)),
        2: ("offset", b.CreateString(version)), 3: ("offset", _vector(b, [subgraph])),
        4: ("offset", b.CreateString(AUTHOR)), 5: ("offset", b.CreateString(LICENSE)),
        7: ("offset", b.CreateString(_MIN_PARSER_VERSION))})
    b.Finish(root, file_identifier=_IDENTIFIER)
    return bytes(b.Output())


def _build(b, fields):
    """One table from {slot: (kind, value)}; offsets must be built before it starts."""
    b.StartObject(max(fields, default=-1) + 1)
    for slot, (kind, value) in fields.items():
        if kind == "offset":
            b.PrependUOffsetTRelativeSlot(slot, value, 0)
        elif kind == "uint8":
            b.PrependUint8Slot(slot, value, 0)
        else:
            b.PrependInt8Slot(slot, value, 0)
    return b.EndObject()


def _vector(b, offsets):
    b.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        b.PrependUOffsetTRelative(offset)
    return b.EndVector()


def _root(buffer):
    return Table(buffer, flatbuffers.encode.Get(flatbuffers.packer.uoffset, buffer, 0))


def _field(table, slot):
    return table.Offset(4 + 2 * slot) if table is not None else 0


def _table(table, slot):
    offset = _field(table, slot)
    return Table(table.Bytes, table.Indirect(table.Pos + offset)) if offset else None


def _tables(table, slot):
    offset = _field(table, slot)
    if not offset:
        return []
    start = table.Vector(offset)
    return [Table(table.Bytes, table.Indirect(start + 4 * i))
            for i in range(table.VectorLen(offset))]


def _string(table, slot):
    offset = _field(table, slot)
    return table.String(table.Pos + offset).decode("utf-8") if offset else None


def _scalar(table, slot, kind):
    offset = _field(table, slot)
    return table.Get(getattr(flatbuffers.number_types, f"{kind}Flags"),
                     table.Pos + offset) if offset else 0


def _floats(table, slot):
    offset = _field(table, slot)
    if not offset:
        return None
    return table.GetVectorAsNumpy(flatbuffers.number_types.Float32Flags, offset).tolist()


def _packed_files(data):
    """{name: bytes} of the zip appended to the model, {} where there is none."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as packed:
            return {info.filename: packed.read(info) for info in packed.infolist()}
    except zipfile.BadZipFile:
        return {}
