"""`python -m benchmarks --peers`: our training step against PyTorch's, each in its own processes.

Each column is a framework, a precision and a CPU setting; each round starts
one process of every column, in an order that rotates from round to round,
so the machine's load touches every column alike (in one process, the two
frameworks' thread pools spin against each other). A process trains one
untimed epoch and a few timed ones (`benchmarks/peer.py`); the spread across
processes is the spread of their medians, beside the spread within them.

Columns: ours as it runs by default (oneDNN as `resnet_keras.backend`
decides), with oneDNN off (TensorFlow's own default on x86 CPUs without
AVX512-VNNI, AVX512-BF16 or AMX), and with oneDNN held to AVX2 kernels
(`ONEDNN_MAX_CPU_ISA=AVX2`: the kernels such a CPU gets); PyTorch by
default and held to AVX2 (`ATEN_CPU_CAPABILITY=avx2` too); both in
bfloat16 where the CPU computes it natively.
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SETTINGS = {
    # rows: (model, input side, batch, steps an epoch)
    "peers": {"rows": (("resnet20", 32, 128, 10), ("resnet50", 224, 16, 3)),
              "processes": 3, "epochs": 3, "columns": "all"},
    # The ResNet-20 row of `peers` alone: a third of its time, and no torchvision.
    "peers-resnet20": {"rows": (("resnet20", 32, 128, 10),), "processes": 3, "epochs": 3,
                       "columns": "all"},
    "peers-quick": {"rows": (("resnet20", 32, 8, 2),), "processes": 2, "epochs": 2,
                    "columns": ("ours", "pytorch")},
}
_AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2"}
# key: (framework, precision, environment, label)
COLUMNS = {
    "ours": ("ours", "float32", {}, "ours"),
    "ours_onednn_off": ("ours", "float32", {"TF_ENABLE_ONEDNN_OPTS": "0"}, "ours, oneDNN off"),
    "ours_avx2": ("ours", "float32", {"TF_ENABLE_ONEDNN_OPTS": "1", **_AVX2},
                  "ours, oneDNN on AVX2 kernels"),
    "pytorch": ("pytorch", "float32", {}, "PyTorch"),
    "pytorch_avx2": ("pytorch", "float32", {"ATEN_CPU_CAPABILITY": "avx2", **_AVX2},
                     "PyTorch on AVX2 kernels"),
    "ours_bf16": ("ours", "bfloat16", {}, "ours bfloat16"),
    "pytorch_bf16": ("pytorch", "bfloat16", {}, "PyTorch bfloat16 autocast"),
}
# (name, numerator, denominator): ratios taken process by process within a round.
RATIOS = (("ours / PyTorch", "ours", "pytorch"),
          ("ours / PyTorch, AVX2 kernels", "ours_avx2", "pytorch_avx2"),
          ("ours / PyTorch, bfloat16", "ours_bf16", "pytorch_bf16"),
          ("oneDNN on / off", "ours", "ours_onednn_off"),
          ("oneDNN on AVX2 kernels / off", "ours_avx2", "ours_onednn_off"))
# Every ours / PyTorch ratio measured is held to this.
TARGET = 1.0
# Variables a column sets; the others' values in our environment are dropped, so
# that "ours" is the default and not whatever this shell asked for.
_SET_BY_COLUMNS = ("TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


def columns(mode, *, bf16: bool) -> list[str]:
    """The columns `mode` measures; the bfloat16 ones only where the CPU computes it."""
    chosen = SETTINGS[mode]["columns"]
    keys = list(COLUMNS) if chosen == "all" else list(chosen)
    return [k for k in keys if bf16 or COLUMNS[k][1] != "bfloat16"]


def run(mode, *, torch_python=None):
    """Measures `SETTINGS[mode]`; returns the JSON-ready result.

    Args:
        mode: `peers`, `peers-resnet20` or `peers-quick`.
        torch_python: the Python that runs the PyTorch side (default: this
            one); it needs torch, and torchvision for ResNet-50.

    Raises:
        RuntimeError: `torch_python` cannot import what it needs, or a process
            failed; its last error line is in the message.
    """
    from benchmarks.machine import result_head
    from job import config as config_lib
    from training.distribute import choose_precision

    s = SETTINGS[mode]
    torch_python = torch_python or sys.executable
    bf16 = choose_precision("auto").policy == "mixed_bfloat16"
    keys = columns(mode, bf16=bf16)
    _check_torch(torch_python, torchvision=any(row[0] == "resnet50" for row in s["rows"]))
    weight_decay = config_lib.resolve().train.weight_decay
    result = {**result_head(mode, s), "torch_python": torch_python,
              "columns": {k: COLUMNS[k][3] for k in keys}, "target": TARGET}
    rows = {name: {"model": name, "image_size": size, "batch_size": batch, "steps": steps,
                   **{k: [] for k in keys}} for name, size, batch, steps in s["rows"]}
    for turn in range(s["processes"]):
        for name, size, batch, steps in s["rows"]:
            for key in keys[turn % len(keys):] + keys[:turn % len(keys)]:
                print(f"  round {turn + 1}/{s['processes']}: {name}, {COLUMNS[key][3]} ...",
                      flush=True)
                rows[name][key].append(_process(
                    key, model=name, image_size=size, batch=batch, steps=steps,
                    epochs=s["epochs"], weight_decay=weight_decay, torch_python=torch_python))
    result["training"] = [_summary(row, keys) for row in rows.values()]
    result["targets"] = _targets(result["training"])
    return result


def _check_torch(python, *, torchvision):
    modules = "torch, torchvision" if torchvision else "torch"
    try:
        done = subprocess.run([python, "-c", f"import {modules}"], capture_output=True,
                              text=True)
    except OSError as e:
        raise RuntimeError(f"--torch-python {python} cannot run: {e.strerror}") from None
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise RuntimeError(f"--torch-python {python} cannot import {modules} ({last}); install "
                           f"them there (pip install torch==2.14.1 torchvision==0.29.1)")


def _process(key, *, model, image_size, batch, steps, epochs, weight_decay, torch_python):
    """One child process of column `key`: its epochs' images/s and what it reports."""
    framework, precision, env, _ = COLUMNS[key]
    python = torch_python if framework == "pytorch" else sys.executable
    command = [python, "-m", "benchmarks.peer", "--framework", framework, "--model", model,
               "--precision", precision, "--image-size", str(image_size), "--batch", str(batch),
               "--steps", str(steps), "--epochs", str(epochs),
               "--weight-decay", str(weight_decay)]
    environ = {k: v for k, v in os.environ.items() if k not in _SET_BY_COLUMNS}
    done = subprocess.run(command, cwd=ROOT, env={**environ, **env}, capture_output=True,
                          text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed (exit {done.returncode}): "
                           f"{done.stderr.strip()[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _summary(row, keys):
    """A row's columns: each process's median, their spread, the spread within; the ratios."""
    from benchmarks.timing import paired_ratio, spread

    out = {k: row[k] for k in ("model", "image_size", "batch_size", "steps")}
    for key in keys:
        processes = row[key]
        within = [spread(p["rates"]) for p in processes]
        medians = [w["median"] for w in within]
        out[key] = {**spread(medians), "rounds": medians, "within": within,
                    "across_max_over_min": max(medians) / min(medians),
                    "within_max_over_min": max(w["max"] / w["min"] for w in within),
                    "stolen": [p.get("stolen") for p in processes],
                    "reports": {k: v for k, v in processes[0].items()
                                if k not in ("rates", "stolen")}}
    out["ratios"] = {}
    for name, over, under in RATIOS:
        if over in keys and under in keys:
            rounds = [a / b for a, b in zip(out[over]["rounds"], out[under]["rounds"])]
            out["ratios"][name] = {"median": paired_ratio(out[over], out[under]),
                                   "min": min(rounds), "max": max(rounds),
                                   "over": over, "under": under}
    return out


def _targets(training) -> list[dict]:
    """Every ours / PyTorch ratio of every net against `TARGET`."""
    return [{"model": row["model"], "ratio": name, "value": r["median"],
             "target": f">= {TARGET}", "met": r["median"] >= TARGET}
            for row in training for name, r in row["ratios"].items()
            if r["under"].startswith("pytorch")]
