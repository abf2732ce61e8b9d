"""Tests for the package layout: `resnet_keras` needs only Keras and numpy.

Training data, with its scikit-learn, PIL, pickle and tarfile readers, lives in
`datasets/`, which the model package must never import (one direction of flow).
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# TensorFlow and tf_keras import PIL, tarfile and pickle themselves, so what
# resnet_keras answers for is the modules it adds to theirs.
_IMPORTS = """
import json, os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"  # as resnet_keras.backend sets it
import tensorflow, tf_keras
before = set(sys.modules)
import resnet_keras
print(json.dumps({"added": sorted(set(sys.modules) - before), "all": sorted(sys.modules)}))
"""


def test_importing_resnet_keras_adds_only_its_own_modules():
    result = subprocess.run([sys.executable, "-c", _IMPORTS], cwd=ROOT, check=True,
                            capture_output=True, text=True)
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert "resnet_keras.models" in modules["added"]
    assert [m for m in modules["added"] if m.split(".")[0] != "resnet_keras"] == []
    assert [m for m in modules["all"] if m.split(".")[0] in ("sklearn", "datasets")] == []
