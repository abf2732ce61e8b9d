"""Tests for export/metadata.py and the metadata entries of export/tflite_file.py."""

import io
import zipfile

import numpy as np
import pytest
import tiny_classifier  # tests/ is on sys.path under pytest
from ai_edge_litert.interpreter import Interpreter

from export import metadata, tflite_file
from resnet_keras.backend import keras, tf

layers = keras.layers
LABELS = tiny_classifier.LABELS


@pytest.fixture(scope="module", params=list(tiny_classifier.VARIANTS))
def tiny_file(request, tmp_path_factory):
    """A tiny classifier of raw RGB pixels, float32 or full integer with uint8 IO."""
    path = tmp_path_factory.mktemp("model") / f"tiny_{request.param}.tflite"
    path.write_bytes(tiny_classifier.tflite_bytes(request.param))
    return path


def _outputs(data):
    interpreter = Interpreter(model_content=bytes(data))
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    images = np.random.default_rng(1).integers(0, 256, (5, *detail["shape"][1:]))
    outputs = []
    for image in images.astype(detail["dtype"]):
        interpreter.set_tensor(detail["index"], image[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
    return np.concatenate(outputs)


def test_round_trip_keeps_the_model(tiny_file, tmp_path):
    path = tmp_path / tiny_file.name
    path.write_bytes(tiny_file.read_bytes())
    assert metadata.read_metadata(path) is None
    metadata.write(path, labels=LABELS, version="run-1")

    info = metadata.read_metadata(path)
    assert info["name"] == tiny_file.stem and info["version"] == "run-1"
    assert info["author"] and info["license"] and info["min_parser_version"] == "1.0.0"
    assert "raw pixels 0..255" in info["description"]
    assert info["input"] == {"name": "image", "color_space": "RGB", "mean": [0.0] * 3,
                             "std": [1.0] * 3, "min": [0.0] * 3, "max": [255.0] * 3}
    assert info["output"]["label_file"] == "labels.txt"
    assert info["output"]["label_file_type"] == "TENSOR_AXIS_LABELS"
    assert info["labels"] == LABELS and info["packed_files"] == ["labels.txt"]

    data = path.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as packed:
        assert packed.read("labels.txt").decode().splitlines() == LABELS
    before, after = tflite_file.read(tiny_file), tflite_file.read(path)
    assert [(op.name, op.version) for op in after.ops] == \
        [(op.name, op.version) for op in before.ops]
    assert [t.name for t in after.tensors] == [t.name for t in before.tensors]
    np.testing.assert_array_equal(_outputs(data), _outputs(tiny_file.read_bytes()))


def test_writing_again_replaces_the_metadata(tiny_file, tmp_path):
    path = tmp_path / tiny_file.name
    path.write_bytes(tiny_file.read_bytes())
    metadata.write(path, labels=LABELS, version="first")
    metadata.write(path, labels=["a", "b", "c"], name="renamed", version="second")
    info = metadata.read_metadata(path)
    assert (info["name"], info["version"], info["labels"]) == ("renamed", "second",
                                                               ["a", "b", "c"])
    assert info["packed_files"] == ["labels.txt"]
    data = path.read_bytes()
    assert tflite_file.metadata_entry(data, metadata.ENTRY_NAME)[4:8] == b"M001"


@pytest.mark.parametrize("labels, message", [
    (LABELS[:2], "2 labels given for a model with 3 output classes"),
    ("cat dog bird", "list of class names"),
    (["cat", "do\ng", "bird"], "one line"),
    (["cat", " ", "bird"], "non-empty"),
])
def test_bad_labels_are_refused(tiny_file, tmp_path, labels, message):
    path = tmp_path / tiny_file.name
    path.write_bytes(tiny_file.read_bytes())
    with pytest.raises(ValueError, match=message):
        metadata.write(path, labels=labels, version="x")
    assert path.read_bytes() == tiny_file.read_bytes()


def test_not_a_model_or_not_a_classifier(tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="junk.tflite is not a TFLite model"):
        metadata.write(junk, labels=LABELS, version="x")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        metadata.write(tmp_path / "missing.tflite", labels=LABELS, version="x")
    inputs = layers.Input((4,))
    flat = tf.lite.TFLiteConverter.from_keras_model(
        keras.Model(inputs, layers.Dense(3)(inputs))).convert()
    with pytest.raises(ValueError, match=r"\(1, height, width, 3\) RGB pixels"):
        metadata.add_metadata(flat, labels=LABELS, name="flat", version="x")
