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

# What each release refuses on the CPU: 0.10.35's TFLite runtime predates int4 tensors, it
# sizes the packed int4 weights as int8; the current release (requirements-mediapipe.txt)
# takes every variant. When 0.10.35's GPU environment moves on, this test says so.
REFUSED = {"cpu": {}, "gpu": {"int4_weights": "requires 36864 bytes, but is allocated with "
                                              "18432 bytes"}}


@pytest.mark.parametrize("delegate", ["cpu", "gpu"])
def test_each_environment_classifies_every_variant_on_the_cpu_as_the_report(
        finished_run, mediapipe_pythons, delegate):
    run_dir, _ = finished_run  # the whole quick job (tests/conftest.py)
    report = json.loads((run_dir / "report.json").read_text())
    measured = {entry["variant"]: entry for entry in report["variants"]
                if entry["variant"] in VARIANTS}
    assert sorted(measured) == sorted(VARIANTS)
    dataset = load_dataset("digits")
    images, labels = dataset.test_arrays()
    for variant, entry in measured.items():
        # No options, on the CPU: what an app gets.
        result = mediapipe_client.classify(mediapipe_pythons[delegate],
                                           run_dir / "export" / entry["file"], images)
        if variant in REFUSED[delegate]:
            assert REFUSED[delegate][variant] in result.get("error", ""), result
            continue
        assert "error" not in result, (variant, result["error"])
        index = np.asarray(result["index"])
        # The names come from labels.txt packed in the file, in class-index order.
        assert result["name"] == [dataset.class_names[i] for i in index], variant
        top1 = float((index == labels).mean())
        assert top1 == pytest.approx(entry["top1"], abs=1e-9), (variant, top1, entry["top1"])


def test_the_cpu_environment_is_the_current_release_and_the_gpus_the_one_whose_gpu_runs(
        mediapipe_pythons):
    answers = {d: mediapipe_client.classify(python, "absent.tflite", np.zeros((1, 8, 8, 3)))
               for d, python in mediapipe_pythons.items()}
    assert answers["cpu"]["version"].split(".")[0] != "0" and answers["gpu"]["version"] == \
        "0.10.35"


def test_classify_refuses_an_unknown_delegate(mediapipe_pythons):
    with pytest.raises(ValueError, match="delegate must be one of cpu, gpu, got 'npu'"):
        mediapipe_client.classify(mediapipe_pythons["cpu"], "x.tflite", np.zeros((1, 8, 8, 3)),
                                  delegate="npu")


def test_a_failed_build_says_what_pip_said_and_leaves_nothing(tmp_path, monkeypatch):
    requirements = tmp_path / "requirements-mediapipe.txt"
    requirements.write_text("mediapipe ==== not a version\n")  # pip refuses it offline
    monkeypatch.setitem(mediapipe_client.REQUIREMENTS, "cpu", requirements)
    monkeypatch.setenv("RESNET_KERAS_CACHE", str(tmp_path / "cache"))
    assert mediapipe_client.environment("cpu") is None
    with pytest.raises(RuntimeError, match="pip could not install requirements-mediapipe.txt"):
        mediapipe_client.build("cpu")
    assert mediapipe_client.environment("cpu") is None
    assert list((tmp_path / "cache").iterdir()) == []
