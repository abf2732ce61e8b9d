"""Tests for training/distribute.py: training precision from the hardware, scale-out.

Mixed precision is trained and saved as float32 (`rundir.model_files`); the
strategies run without a GPU, over logical CPUs or two local workers.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from rundir import model_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A few quick steps: enough to exercise the mechanism, not to learn.
QUICK = ["--train.epochs", "2", "--train.steps_per_epoch", "4", "--train.batch_size", "16"]


def run_train(args, *, timeout=300):
    return subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)


# ---- training precision ----


@pytest.mark.parametrize("setting, hardware, policy, reason", [
    ("auto", {"flags": {"avx512_bf16"}}, "mixed_bfloat16", "CPU with AVX512-BF16"),
    ("auto", {"flags": {"amx_bf16", "avx512_bf16"}}, "mixed_bfloat16",
     "CPU with AMX-BF16 and AVX512-BF16"),
    ("auto", {"flags": {"avx2"}}, "float32", "neither AMX-BF16 nor AVX512-BF16"),
    ("on", {"flags": {"avx2"}}, "mixed_bfloat16", "emulated"),
    ("auto", {"flags": None}, "float32", "features unknown"),
    ("auto", {"gpus": [(9, 0)]}, "mixed_float16", "compute capability 9.0"),
    ("auto", {"gpus": [(8, 0), (6, 1)]}, "float32", "below 7.0"),
    ("on", {"gpus": [(6, 1)]}, "mixed_float16", "as asked"),
    ("auto", {"tpu": True, "gpus": []}, "mixed_bfloat16", "TPU"),
    ("off", {"flags": {"amx_bf16"}}, "float32", "--train.mixed_precision off"),
    ("float16", {"flags": {"amx_bf16"}}, "mixed_float16", "--train.mixed_precision float16"),
    ("bfloat16", {"gpus": [(9, 0)]}, "mixed_bfloat16", "--train.mixed_precision bfloat16"),
])
def test_precision_follows_the_hardware(setting, hardware, policy, reason):
    from training.distribute import choose_precision
    hardware = {"gpus": [], "tpu": False, **hardware}
    chosen = choose_precision(setting, **hardware)
    assert chosen.policy == policy and reason in chosen.reason


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    from training.distribute import cpu_flags
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu sse2 avx512_bf16\n")
    assert cpu_flags(cpuinfo) == {"fpu", "sse2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") is None


def test_a_mixed_precision_model_is_saved_as_its_float32_twin(tmp_path):
    from resnet_keras import build_model
    from resnet_keras.backend import keras
    from training.distribute import dtype_policy
    with dtype_policy("mixed_bfloat16"):
        model = build_model("resnet20", input_shape=(32, 32, 3), classes=10)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    assert model.get_layer("conv1_conv").compute_dtype == "bfloat16"
    model_files.save_model(model, tmp_path / "m.keras")
    loaded = model_files.load_model(tmp_path / "m.keras")
    assert {layer.dtype_policy.name for layer in loaded.layers} == {"float32"}
    for saved, trained in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(saved, trained)
    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    # The same function at higher precision: bfloat16 keeps about 3 significant digits.
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0),
                               atol=0.05)


# ---- scale-out, without a GPU ----

def test_mirrored_strategy_over_two_logical_cpus(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(["--stages", "train", "--run-dir", str(run_dir), *QUICK,
                        "--train.cpu_replicas", "2"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 replica(s) (MirroredStrategy)" in result.stdout
    train_result = json.loads((run_dir / "train_result.json").read_text())
    assert train_result["replicas"] == 2 and train_result["global_batch"] == 32


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_mirrored_two_local_workers_end_identical(tmp_path):
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(subprocess.Popen(
            [sys.executable, "train.py", "--stages", "train", "--run-dir",
             str(tmp_path / f"worker{index}"), *QUICK],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "TF_CONFIG": json.dumps(tf_config)}))
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    for p, out in zip(processes, outputs):
        assert p.returncode == 0, out[-3000:]
        assert "2 replica(s) (MultiWorkerMirroredStrategy)" in out
    weights = [model_files.load_model(tmp_path / f"worker{i}" / "last.keras").get_weights()
               for i in range(2)]
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
