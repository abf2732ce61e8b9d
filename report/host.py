"""The CPU that measured the report's latency, and the int8 instructions it has.

An int8 file is faster than float32 only where the CPU has integer dot-product
instructions that LiteRT's XNNPACK kernels use (x86: AVX-512 VNNI, AVX-VNNI,
AMX; ARM: the dot-product and int8 matrix-multiply extensions of phones since
about 2018). On a CPU without them int8 can be slower than float32, so a
latency figure means little without the CPU it was measured on. No TensorFlow.

    >>> cpu_facts()["int8_features"]
    ['avx2', 'avx512bw', 'avx512_vnni']
"""

import os
import platform

CPUINFO = "/proc/cpuinfo"
# The int8-relevant feature flags, in the names /proc/cpuinfo uses.
INT8_FEATURES = {
    "x86": ("avx2", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8"),
    "arm": ("asimd", "asimddp", "i8mm"),  # asimddp: the dot-product extension (dotprod)
}
_ARCHITECTURES = {"x86_64": "x86", "amd64": "x86", "i386": "x86", "i686": "x86",
                  "aarch64": "arm", "arm64": "arm", "armv7l": "arm", "armv8l": "arm"}
_MODEL_KEYS = ("model name", "Model", "Hardware", "Processor", "cpu model")
_FLAG_KEYS = ("flags", "Features")


def _parse(text):
    """{key: value} of the first processor block of /proc/cpuinfo text."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return fields


def cpu_facts(*, cpuinfo=CPUINFO, machine=None):
    """The host CPU's name, architecture and int8-relevant features.

    Args:
        cpuinfo: str, the path of /proc/cpuinfo (Linux, Android); where it
            cannot be read, only what `platform` knows is given.
        machine: str, `platform.machine()` (for tests), or None for this host's.

    Returns:
        dict: `model` (the CPU's name, or None), `architecture`
        (`platform.machine()`), `int8_features` (those of `INT8_FEATURES` the
        CPU has, in that order; None when they could not be read),
        `int8_features_checked` (the flags looked for; empty for an
        architecture not in `INT8_FEATURES`) and `source` (`/proc/cpuinfo` or
        `platform`).
    """
    machine = machine or platform.machine()
    checked = list(INT8_FEATURES.get(_ARCHITECTURES.get(machine.lower(), ""), ()))
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            fields = _parse(f.read())
    except OSError:
        return {"model": platform.processor() or None, "architecture": machine,
                "int8_features": None, "int8_features_checked": checked, "source": "platform"}
    flags = set(next((fields[k] for k in _FLAG_KEYS if k in fields), "").split())
    return {"model": next((fields[k] for k in _MODEL_KEYS if fields.get(k)), None)
            or platform.processor() or None,
            "architecture": machine,
            "int8_features": [name for name in checked if name in flags],
            "int8_features_checked": checked,
            "source": os.fspath(cpuinfo)}
