"""The machine a benchmark ran on, in every result's `machine` field: CPU, GPUs, TensorFlow, oneDNN.

Every mode writes the same description (`machine_info`), so every rendered
table opens with the same line (`benchmarks.render`), and `tag` names the files.
"""

import datetime
import os
import platform

from resnet_keras.backend import ONEDNN, tf
from resnet_keras.cpu import CPU, this_cpu

# The CPU features that decide our kernels: vector width, int8 dot products, bfloat16.
CPU_FEATURES = {"avx2": "AVX2", "avx512f": "AVX512F", "avx512_vnni": "AVX512-VNNI",
                "avx_vnni": "AVX-VNNI", "avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX-BF16",
                "amx_int8": "AMX-INT8"}


def cpu_features(cpu: CPU) -> list[str]:
    """The names of the `CPU_FEATURES` that `cpu` has, in that order (none where unknown)."""
    return [name for flag, name in CPU_FEATURES.items() if flag in (cpu.flags or ())]


def machine_info(cpu: CPU | None = None) -> dict:
    """This machine, as the `machine` field of a benchmark result.

    Args:
        cpu: `resnet_keras.cpu.CPU` (for tests), or None for this host's.

    Returns:
        dict: `tag` (`x86_64-2cpu[-1gpu]`, the results' file name), `cpu` (its
        name, else `platform.machine()`), `cpu_count`, `cpu_features`
        (`cpu_features`), `gpus` (their names), `platform`, `tensorflow` (its
        version) and `onednn` (`resnet_keras.backend.ONEDNN`).
    """
    cpu = cpu or this_cpu()
    gpus = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
            for g in tf.config.list_physical_devices("GPU")]
    tag = f"{cpu.machine}-{os.cpu_count()}cpu" + (f"-{len(gpus)}gpu" if gpus else "")
    return {"tag": tag, "cpu": cpu.model or cpu.machine, "cpu_count": os.cpu_count(),
            "cpu_features": cpu_features(cpu), "gpus": gpus, "platform": platform.platform(),
            "tensorflow": tf.__version__, "onednn": ONEDNN.to_dict()}


def result_head(mode, settings) -> dict:
    """What every benchmark result opens with: `mode`, `settings`, `machine`, `created` (UTC)."""
    return {"mode": mode, "settings": settings, "machine": machine_info(),
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
