"""The quick jobs the tests run through train.py, and how they run it."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A few training steps: enough to exercise a mechanism, not to learn.
FEW_STEPS = ["--train.epochs", "2", "--train.steps_per_epoch", "4", "--train.batch_size", "16"]
# All four stages, short.
QUICK = ["--train.epochs", "2", "--train.steps_per_epoch", "6", "--train.batch_size", "32",
         "--qat.epochs", "1", "--export.calibration_size", "32", "--report.latency_runs", "5",
         "--report.mediapipe_images", "8"]


def run_train(args, *, timeout=300):
    return subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)
