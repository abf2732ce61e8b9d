"""Tests for export/android.py: the bundle and its model card."""

import hashlib
import json

import numpy as np
import pytest
import tiny_classifier  # tests/ is on sys.path under pytest
from ai_edge_litert.interpreter import Interpreter

from export import android, metadata

LABELS = tiny_classifier.LABELS


@pytest.fixture(scope="module")
def int8_file(tmp_path_factory):
    """A tiny full-integer model with uint8 IO and the Normalization inside."""
    path = tmp_path_factory.mktemp("model") / "tiny_int8.tflite"
    path.write_bytes(tiny_classifier.tflite_bytes("int8"))
    return path


def test_bundle_contents_and_card(int8_file, tmp_path):
    entry = {"variant": "int8", "file": str(int8_file), "size_bytes": int8_file.stat().st_size,
             "top1": 0.9, "top5": None, "top1_delta_points": -0.5, "agreement": 0.98,
             "latency_ms": {"1_thread": {"median_ms": 0.2}, "all_threads": {"median_ms": 0.1}},
             "edgetpu": {"compatible": True}}
    folder = android.write_bundle(int8_file, out_dir=tmp_path / "bundle", labels=LABELS,
                                  report_entry=entry)
    assert sorted(p.name for p in folder.iterdir()) == [
        "labels.txt", "model_card.json", "tiny_int8.tflite"]
    bundled = folder / "tiny_int8.tflite"
    # The file had no metadata: the copy gets it, the original is left as is.
    assert metadata.read_metadata(int8_file) is None
    assert metadata.read_metadata(bundled)["labels"] == LABELS
    assert (folder / "labels.txt").read_text().splitlines() == LABELS

    card = json.loads((folder / "model_card.json").read_text())
    interpreter = Interpreter(model_path=str(int8_file))
    for key, detail in (("input", interpreter.get_input_details()[0]),
                        ("output", interpreter.get_output_details()[0])):
        scale, zero_point = detail["quantization"]
        assert card[key]["shape"] == detail["shape"].tolist()
        assert card[key]["dtype"] == np.dtype(detail["dtype"]).name == "uint8"
        assert card[key]["scale"] == pytest.approx(scale, rel=1e-7)
        assert card[key]["zero_point"] == zero_point
    assert card["input"]["pixels"] == \
        "raw RGB 0..255, HWC, no normalization: it is inside the model"
    assert card["input"]["feed_raw_bytes"] is (abs(card["input"]["scale"] - 1) < 1e-3
                                               and card["input"]["zero_point"] == 0)
    assert card["labels"] == LABELS and card["num_classes"] == len(LABELS)
    assert card["size_bytes"] == bundled.stat().st_size
    assert card["sha256"] == hashlib.sha256(bundled.read_bytes()).hexdigest()
    assert card["metadata"]["name"] == "tiny_int8"
    assert card["metadata"]["packed_files"] == ["labels.txt"]
    assert card["report"]["top1"] == 0.9 and card["report"]["top1_delta_points"] == -0.5
    assert card["report"]["latency_median_ms"] == {"1_thread": 0.2, "all_threads": 0.1}
    assert card["report"]["edgetpu_compatible"] is True


def test_bundle_without_report_entry(int8_file, tmp_path):
    folder = android.write_bundle(int8_file, out_dir=tmp_path, labels=LABELS)
    assert json.loads((folder / "model_card.json").read_text())["report"] is None


@pytest.mark.parametrize("labels", [LABELS[:2], LABELS + ["fish"]])
def test_label_count_must_match_the_classes(int8_file, tmp_path, labels):
    with pytest.raises(ValueError, match=f"{len(labels)} labels given for a model with 3"):
        android.write_bundle(int8_file, out_dir=tmp_path, labels=labels)


def test_bad_labels_and_entries(int8_file, tmp_path):
    with pytest.raises(ValueError, match="list of class names"):
        android.write_bundle(int8_file, out_dir=tmp_path, labels="cat dog bird")
    with pytest.raises(ValueError, match="one line"):
        android.write_bundle(int8_file, out_dir=tmp_path, labels=["cat", "do\ng", "bird"])
    with pytest.raises(ValueError, match="pass the entry of this file"):
        android.write_bundle(int8_file, out_dir=tmp_path, labels=LABELS,
                             report_entry={"variant": "float32", "size_bytes": 1})
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="junk.tflite is not a TFLite model"):
        android.write_bundle(junk, out_dir=tmp_path, labels=LABELS)


def test_bundle_keeps_the_metadata_of_an_exported_file(int8_file, tmp_path):
    exported = tmp_path / "tiny_int8.tflite"
    exported.write_bytes(int8_file.read_bytes())
    metadata.write(exported, labels=LABELS, version="run-7")
    folder = android.write_bundle(exported, out_dir=tmp_path / "bundle", labels=LABELS)
    assert (folder / "tiny_int8.tflite").read_bytes() == exported.read_bytes()
    card = json.loads((folder / "model_card.json").read_text())
    assert card["metadata"]["version"] == "run-7"
    with pytest.raises(ValueError, match="carries the labels"):
        android.write_bundle(exported, out_dir=tmp_path / "other", labels=["a", "b", "c"])
