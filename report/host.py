"""The CPU that measured the report's latency, and the int8 instructions it has.

An int8 file is faster than float32 only where the CPU has integer dot-product
instructions that LiteRT's XNNPACK kernels use (x86: AVX-512 VNNI, AVX-VNNI,
AMX; ARM: the dot-product and int8 matrix-multiply extensions of phones since
about 2018). On a CPU without them int8 can be slower than float32, so a
latency figure means little without the CPU it was measured on. The CPU itself
is read by `resnet_keras.cpu`.

    >>> cpu_facts()["int8_features"]
    ['avx2', 'avx512bw', 'avx512_vnni']
"""

from resnet_keras.cpu import CPU, this_cpu

# The int8-relevant feature flags, in the names /proc/cpuinfo uses, by `CPU.architecture`.
INT8_FEATURES = {
    "x86": ("avx2", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8"),
    "arm": ("asimd", "asimddp", "i8mm"),  # asimddp: the dot-product extension (dotprod)
}


def cpu_facts(cpu: CPU | None = None) -> dict:
    """The host CPU's name, architecture and int8-relevant features.

    Args:
        cpu: `resnet_keras.cpu.CPU` (for tests), or None for this host's
            (`resnet_keras.cpu.this_cpu`).

    Returns:
        dict: `model` (the CPU's name, or None), `architecture`
        (`platform.machine()`), `int8_features` (those of `INT8_FEATURES` the
        CPU has, in that order; None when its flags could not be read),
        `int8_features_checked` (the flags looked for; empty for an
        architecture not in `INT8_FEATURES`) and `source` (`/proc/cpuinfo` or
        `platform`).
    """
    cpu = cpu or this_cpu()
    checked = list(INT8_FEATURES.get(cpu.architecture, ()))
    return {"model": cpu.model, "architecture": cpu.machine,
            "int8_features": None if cpu.flags is None else [f for f in checked if f in cpu.flags],
            "int8_features_checked": checked, "source": cpu.source}
