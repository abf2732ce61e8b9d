"""Tests for resnet_keras/backend.py: oneDNN decided from the CPU's flags before TF loads."""

import json
import os
import platform
import re
import subprocess
import sys

import pytest
from cpuinfo_texts import AMX_XEON, AVX2_XEON  # tests/ is on sys.path under pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("text, value, reason", [
    (AVX2_XEON, "1", "turned on by resnet_keras: TensorFlow leaves it off on x86 CPUs without "
                     "AVX512-VNNI, AVX512-BF16 or AMX, where our ResNets train faster with it"),
    (AMX_XEON, None, "TensorFlow's default on a CPU with AMX and AVX512-BF16 and AVX512-VNNI"),
])
def test_the_onednn_decision_for_a_cpu_described_by_its_cpuinfo(text, value, reason):
    from resnet_keras.backend import onednn_setting
    from resnet_keras.cpu import parse_cpuinfo
    cpu = parse_cpuinfo(text, machine="x86_64")
    assert onednn_setting({}, machine=cpu.machine, flags=cpu.flags) == (value, reason)


@pytest.mark.parametrize("environ, machine, flags, value, reason", [
    # A user's own setting wins, whichever way, whatever the CPU.
    ({"TF_ENABLE_ONEDNN_OPTS": "0"}, "x86_64", {"avx2"}, None, "TF_ENABLE_ONEDNN_OPTS=0 as set"),
    ({"TF_ENABLE_ONEDNN_OPTS": "1"}, "x86_64", {"avx512_vnni"}, None, "=1 as set"),
    # AVX2 only: TensorFlow leaves it off, we turn it on.
    ({}, "x86_64", {"avx", "avx2", "fma"}, "1", "turned on by resnet_keras"),
    ({}, "AMD64", {"avx2"}, "1", "turned on by resnet_keras"),
    # Where TensorFlow turns it on by itself, or we cannot tell, its default stands.
    ({}, "x86_64", {"avx2", "avx512_vnni", "avx512_bf16"}, None,
     "TensorFlow's default on a CPU with AVX512-BF16 and AVX512-VNNI"),
    ({}, "x86_64", {"avx2", "amx_tile", "amx_bf16"}, None, "on a CPU with AMX"),
    ({}, "x86_64", None, None, "CPU features unknown"),
    ({}, "aarch64", {"asimd"}, None, "TensorFlow's default on aarch64"),
    # Inherited from a parent where resnet_keras set it: decided again, not the user's.
    ({"TF_ENABLE_ONEDNN_OPTS": "1", "RESNET_KERAS_ONEDNN_OPTS": "1"}, "x86_64", {"avx2"}, "1",
     "turned on by resnet_keras"),
    # The user changed it after resnet_keras had set it: the user's again.
    ({"TF_ENABLE_ONEDNN_OPTS": "0", "RESNET_KERAS_ONEDNN_OPTS": "1"}, "x86_64", {"avx2"}, None,
     "TF_ENABLE_ONEDNN_OPTS=0 as set"),
])
def test_onednn_is_turned_on_only_where_tensorflow_leaves_it_off(environ, machine, flags, value,
                                                                 reason):
    from resnet_keras.backend import onednn_setting
    chosen, why = onednn_setting(environ, machine=machine, flags=flags)
    assert chosen == value and reason in why


AVX2_ONLY = {"avx", "avx2", "fma"}  # a CPU where resnet_keras turns oneDNN on


@pytest.mark.parametrize("user, reason", [
    (None, "turned on by resnet_keras"),
    ("0", "TF_ENABLE_ONEDNN_OPTS=0 as set"),
    ("1", "TF_ENABLE_ONEDNN_OPTS=1 as set"),
])
def test_a_child_process_gives_the_same_reason_as_its_parent(user, reason):
    from resnet_keras.backend import set_onednn
    parent = {k: v for k, v in os.environ.items()
              if k not in ("TF_ENABLE_ONEDNN_OPTS", "RESNET_KERAS_ONEDNN_OPTS")}
    if user is not None:
        parent["TF_ENABLE_ONEDNN_OPTS"] = user
    assert reason in set_onednn(parent, machine="x86_64", flags=AVX2_ONLY)
    assert parent["TF_ENABLE_ONEDNN_OPTS"] == (user or "1")
    # The child inherits what the parent set, as train.py's children do; the CPU it
    # decides for is the same AVX2-only one, whatever this machine's CPU is.
    code = ("import json, os; from resnet_keras.backend import set_onednn; "
            f"why = set_onednn(os.environ, machine='x86_64', flags={AVX2_ONLY!r}); "
            "print(json.dumps([why, os.environ['TF_ENABLE_ONEDNN_OPTS']]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=parent,
                         capture_output=True, text=True, check=True).stdout
    child_reason, child_value = json.loads(out.strip().splitlines()[-1])
    assert reason in child_reason and child_value == (user or "1")


def _onednn_in_a_fresh_process(**env):
    code = ("import json; from resnet_keras.backend import ONEDNN; "
            "print(json.dumps(ONEDNN.to_dict()))")
    environ = {k: v for k, v in os.environ.items()
               if k not in ("TF_ENABLE_ONEDNN_OPTS", "RESNET_KERAS_ONEDNN_OPTS")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**environ, **env},
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="the decision is made on x86 CPUs only")
def test_tensorflow_runs_onednn_by_default_and_off_when_the_user_says_so():
    # What TensorFlow itself reports once loaded, not what we asked for.
    assert _onednn_in_a_fresh_process()["on"] is True
    off = _onednn_in_a_fresh_process(TF_ENABLE_ONEDNN_OPTS="0")
    assert off == {"on": False, "reason": "TF_ENABLE_ONEDNN_OPTS=0 as set"}


def test_loading_noise_is_the_info_lines_only():
    from resnet_keras.backend import without_loading_noise
    printed = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796666515.284842   26431 port.cc:153] oneDNN custom operations are on.\n"
        "W0000 00:00:1796666515.285210   26431 some.cc:1] a real warning\n"
        "E0000 00:00:1796666515.285210   26431 some.cc:2] a real error\n"
        "Traceback (most recent call last):\n")
    assert without_loading_noise(printed) == (
        "W0000 00:00:1796666515.285210   26431 some.cc:1] a real warning\n"
        "E0000 00:00:1796666515.285210   26431 some.cc:2] a real error\n"
        "Traceback (most recent call last):\n")


@pytest.mark.parametrize("level, quiet", [(None, True), ("0", False)])
def test_train_py_starts_with_its_own_line_unless_the_user_asks_for_tensorflows(tmp_path, level,
                                                                              quiet):
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if level is not None:
        environ["TF_CPP_MIN_LOG_LEVEL"] = level
    done = subprocess.run([sys.executable, "train.py", "--stages", "train", "--train.epochs", "1",
                           "--train.steps_per_epoch", "1", "--run-dir", str(tmp_path / "run")],
                          cwd=ROOT, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:]
    first = done.stdout.splitlines()[0]
    if quiet:
        assert first == f"run directory: {tmp_path / 'run'}"
    else:  # TensorFlow's own INFO lines, as the user asked
        assert re.search(r"^I\d{4} ", done.stdout, re.M) and not first.startswith("run directory")
