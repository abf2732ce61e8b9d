"""The quick whole job the tests run through train.py, and how they run it."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = ["--train.epochs", "2", "--train.steps_per_epoch", "6", "--train.batch_size", "32",
         "--qat.epochs", "1", "--export.calibration_size", "32", "--export.latency_runs", "5",
         "--report.gpu_images", "8"]


def run_train(args, timeout=900):
    return subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)
