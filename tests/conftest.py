"""Fixtures shared by several test modules: a hand-made report.json dict, a trained resnet20.

TensorFlow is imported inside the fixtures that need it, so collecting a
test module that does not use them stays fast.
"""

import os

import pytest

# No test may reach the internet: a test of downloads sets its own mirror on the
# loopback address and turns this off (tests/test_fetch.py). Subprocesses inherit it.
os.environ["RESNET_KERAS_OFFLINE"] = "1"
for _setting in ("RESNET_KERAS_MIRROR", "RESNET_KERAS_HASHES"):
    os.environ.pop(_setting, None)


def _latency(one, many):
    return {"1_thread": {"median_ms": one, "min_ms": one * 0.9, "max_ms": one * 1.2},
            "all_threads": {"median_ms": many, "min_ms": many * 0.9, "max_ms": many * 1.3}}


def _edgetpu(compatible, first=None):
    ops = [{"index": 0, "op": "CONV_2D", "version": 3, "output": "conv1",
            "supported": compatible, "placement": "edgetpu" if compatible else "cpu",
            "reason": "in the supported-operations table" if compatible
            else "tensors not 8-bit quantized: input 'x' FLOAT32"}]
    return {"file": "x.tflite", "compatible": compatible, "first_cpu_op": first,
            "mapped_ops_estimate": 1 if compatible else 0, "total_ops": 1, "ops": ops,
            "notes": ["a note"],
            "compiler": {"available": False, "ran": False, "reason": "not on PATH",
                         "mapped_ops": None, "total_ops": None, "path": None}}


@pytest.fixture
def report():
    """A report of keras_float, float32 and int8 on 3,600 test images, with image-by-image results.

    Built by tests/report_inputs.py: keras_float misses images 0..89 (97.50%),
    float32 the same; int8 gets 0..14 right and misses 90..114 as well
    (97.22%, -0.28 points): 25 images only keras_float gets right, 15 only
    int8 does, so the paired 95% interval is about -0.62 to +0.06 points.
    """
    import report_inputs  # tests/ is on sys.path under pytest

    truth = report_inputs.labels(3600)
    keras = report_inputs.predictions(truth, wrong=range(90))
    int8 = report_inputs.predictions(truth, wrong=range(90, 115), like=keras)
    int8[:15] = truth[:15]
    made = {
        "model": "resnet20", "dataset": "digits", "num_test": 3600, "num_classes": 10,
        "created": "2025-01-01T00:00:00", "machine": {"cpu_count": 2, "platform": "Linux"},
        "variants": [
            {"variant": "keras_float", "file": None, "size_bytes": None, "top1": 0.9750,
             "top5": 0.9990, "top1_delta_points": 0.0, "agreement": 1.0,
             "latency_ms": None, "edgetpu": None},
            {"variant": "float32", "file": "runs/x/resnet20_float32.tflite",
             "size_bytes": 1_100_000, "top1": 0.9750, "top5": 0.9990,
             "top1_delta_points": 0.0, "agreement": 1.0, "latency_ms": _latency(2.0, 1.5),
             "edgetpu": _edgetpu(False, first=0)},
            {"variant": "int8", "file": "runs/x/resnet20_int8.tflite", "size_bytes": 310_000,
             "top1": 0.9722, "top5": None, "top1_delta_points": -0.28, "agreement": 0.9917,
             "latency_ms": _latency(1.0, 0.6), "edgetpu": _edgetpu(True),
             "xnnpack": {"ops": 41, "delegated": 36, "partitions": 3,
                         "not_delegated": {"MAX_POOL_2D": 2, "QUANTIZE": 2, "SOFTMAX": 1}}},
        ],
        "diagnosis": {
            "layers": [{"rank": 1, "tensor_name": "resnet20/conv4_block3_out/Relu",
                        "keras_layers": ["conv4_block3_out"], "op_name": "ADD",
                        "tensor_index": 82, "num_elements": 64, "mean_squared_error": 1e-4,
                        "rmse": 0.01, "snr_db": 31.2, "scale": 0.02, "zero_point": -128,
                        "rmse_per_scale": 0.5}],
            "selective": {"denylist": ["resnet20/conv4_block3_out/Relu"], "file": "sel.tflite",
                          "size_bytes": 330_000, "top1": 0.9750, "top5": None,
                          "top1_delta_points": 0.0, "agreement": 0.997},
        },
    }
    return report_inputs.measure(made, truth, {"keras_float": keras, "float32": keras,
                                               "int8": int8})


@pytest.fixture(scope="session")
def digits():
    """The embedded digits dataset."""
    from datasets import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def trained(digits):
    """resnet20 (0.27M parameters) trained a few epochs on digits: about 90% top-1.

    Shared by the export tests; do not change its weights.
    """
    import resnet_keras as rk
    from resnet_keras.backend import keras

    keras.utils.set_random_seed(0)
    model = rk.build_model("resnet20", classes=digits.num_classes)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy")
    model.fit(digits.train(64), epochs=3, verbose=0)
    return model


@pytest.fixture(scope="session")
def mediapipe_pythons():
    """{delegate: MediaPipe's environment for it} (export/mediapipe_client.py), built on first
    use (pip, ~100 MB each)."""
    from export import mediapipe_client

    try:
        return {d: mediapipe_client.build(d) for d in mediapipe_client.DELEGATES}
    except RuntimeError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, mediapipe_pythons):  # its report runs MediaPipe
    """All four stages of a quick job (tests/jobs.py) in one run directory, and its stdout.

    Shared by the whole-job, MediaPipe and runtime tests: copy it before changing it.
    """
    from jobs import QUICK, run_train

    run_dir = tmp_path_factory.mktemp("pipeline") / "run"
    # Trained in bfloat16 on any CPU: what follows must not depend on the training precision.
    result = run_train(["--run-dir", str(run_dir), "--train.mixed_precision", "bfloat16", *QUICK],
                       timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return run_dir, result.stdout
