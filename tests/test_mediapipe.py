"""The exported files in the real client: MediaPipe Tasks' ImageClassifier.

Its C++ task is the one `com.google.mediapipe:tasks-vision` runs on Android; it
runs in its own environment (export/mediapipe_client.py, built on first use).
"""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from datasets import load_dataset
from export import mediapipe_client
from export.variants import VARIANTS

# MediaPipe 0.10.35's TFLite runtime predates int4 tensors: it sizes the packed
# int4 weights as int8 and refuses the file. When a release takes them, this
# test fails and the variant joins the others.
REFUSED = {"int4_weights": "requires 36864 bytes, but is allocated with 18432 bytes"}

ROOT = pathlib.Path(__file__).resolve().parent.parent
# The GPU check of the report is tests/test_gpu.py's and tests/test_pipeline.py's.
TRAIN = ["--train.epochs", "3", "--qat.epochs", "1", "--export.calibration_size", "64",
         "--export.latency_runs", "5", "--report.gpu_images", "0"]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """All four stages on digits, short: five files and the report that measured them."""
    run_dir = tmp_path_factory.mktemp("mediapipe") / "run"
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "--run-dir", str(run_dir),
                             *TRAIN], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return run_dir


def test_image_classifier_matches_the_report_on_every_variant(digits_run, mediapipe_python):
    report = json.loads((digits_run / "report.json").read_text())
    measured = {entry["variant"]: entry for entry in report["variants"]
                if entry["variant"] in VARIANTS}
    assert sorted(measured) == sorted(VARIANTS)
    dataset = load_dataset("digits")
    images, labels = dataset.test_arrays()
    for variant, entry in measured.items():
        # No options: what an app gets.
        result = mediapipe_client.classify(mediapipe_python,
                                           digits_run / "export" / entry["file"], images)
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
