"""The exported files in the real client: MediaPipe Tasks' ImageClassifier.

Its C++ task is the one `com.google.mediapipe:tasks-vision` runs on Android; it
runs in its own environment (export/mediapipe_client.py, built on first use).
"""

import json

import numpy as np
import pytest

from datasets import load_dataset
from export import mediapipe_client
from export.variants import VARIANTS

# MediaPipe 0.10.35's TFLite runtime predates int4 tensors: it sizes the packed
# int4 weights as int8 and refuses the file. When a release takes them, this
# test fails and the variant joins the others.
REFUSED = {"int4_weights": "requires 36864 bytes, but is allocated with 18432 bytes"}

def test_image_classifier_matches_the_report_on_every_variant(finished_run, mediapipe_python):
    run_dir, _ = finished_run  # the whole quick job (tests/conftest.py)
    report = json.loads((run_dir / "report.json").read_text())
    measured = {entry["variant"]: entry for entry in report["variants"]
                if entry["variant"] in VARIANTS}
    assert sorted(measured) == sorted(VARIANTS)
    dataset = load_dataset("digits")
    images, labels = dataset.test_arrays()
    for variant, entry in measured.items():
        # No options: what an app gets.
        result = mediapipe_client.classify(mediapipe_python,
                                           run_dir / "export" / entry["file"], images)
        if variant in REFUSED:
            assert REFUSED[variant] in result.get("error", ""), result
            continue
        assert "error" not in result, (variant, result["error"])
        index = np.asarray(result["index"])
        # The names come from labels.txt packed in the file, in class-index order.
        assert result["name"] == [dataset.class_names[i] for i in index], variant
        top1 = float((index == labels).mean())
        assert top1 == pytest.approx(entry["top1"], abs=1e-9), (variant, top1, entry["top1"])


def test_classify_refuses_an_unknown_delegate(mediapipe_python):
    with pytest.raises(ValueError, match="delegate must be one of cpu, gpu, got 'npu'"):
        mediapipe_client.classify(mediapipe_python, "x.tflite", np.zeros((1, 8, 8, 3)),
                                  delegate="npu")


def test_a_failed_build_says_what_pip_said_and_leaves_nothing(tmp_path, monkeypatch):
    requirements = tmp_path / "requirements-mediapipe.txt"
    requirements.write_text("mediapipe ==== not a version\n")  # pip refuses it offline
    monkeypatch.setattr(mediapipe_client, "REQUIREMENTS", requirements)
    monkeypatch.setenv("RESNET_KERAS_CACHE", str(tmp_path / "cache"))
    assert mediapipe_client.environment() is None
    with pytest.raises(RuntimeError, match="pip could not install requirements-mediapipe.txt"):
        mediapipe_client.build()
    assert mediapipe_client.environment() is None
    assert list((tmp_path / "cache").iterdir()) == []
