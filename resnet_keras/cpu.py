"""The CPU this process runs on: its name, architecture and feature flags, read once.

The one reader of /proc/cpuinfo: the backend decides oneDNN from the flags, the
report names the CPU that measured latency and its int8 instructions, the
benchmarks name the machine they timed. No TensorFlow.

    >>> cpu = parse_cpuinfo("model name : Xeon\\nflags : fpu avx2\\n", machine="x86_64")
    >>> cpu.model, sorted(cpu.flags), cpu.architecture
    ('Xeon', ['avx2', 'fpu'], 'x86')
"""

import dataclasses
import functools
import platform

CPUINFO = "/proc/cpuinfo"
# `platform.machine()` names, lower-cased, by instruction set.
ARCHITECTURES = {"x86_64": "x86", "amd64": "x86", "i386": "x86", "i686": "x86",
                 "aarch64": "arm", "arm64": "arm", "armv7l": "arm", "armv8l": "arm"}
# Where each kernel writes the CPU's name, and its flags (x86: `flags`, ARM: `Features`).
_MODEL_KEYS = ("model name", "Model", "Hardware", "Processor", "cpu model")
_FLAG_KEYS = ("flags", "Features")


@dataclasses.dataclass(frozen=True)
class CPU:
    """What is known of a CPU.

    Attributes:
        model: str, its name (`Intel(R) Xeon(R) Platinum 8480+`), or None.
        flags: frozenset of its feature flags in /proc/cpuinfo's names
            (`avx2`, `amx_int8`, `asimddp`), or None where they are not listed.
        machine: str, `platform.machine()` (`x86_64`, `aarch64`).
        source: str, where it was read: the cpuinfo path, or `platform`.
    """

    model: str | None
    flags: frozenset[str] | None
    machine: str
    source: str

    @property
    def architecture(self) -> str | None:
        """`x86`, `arm`, or None for another instruction set (`architecture`)."""
        return architecture(self.machine)


def architecture(machine: str) -> str | None:
    """`x86` or `arm` for a `platform.machine()` name (`x86_64`, `AMD64`, `aarch64`), else None."""
    return ARCHITECTURES.get(machine.lower())


def parse_cpuinfo(text: str, *, machine: str, source: str = CPUINFO) -> CPU:
    """The CPU that cpuinfo `text` describes, from its first processor's lines.

    Args:
        text: str, the contents of /proc/cpuinfo (Linux, Android).
        machine: str, `platform.machine()` of the host it was read on.
        source: str, where `text` came from.

    Returns:
        CPU; `model` None where no line names it, `flags` None where no line
        lists them. A key's first line wins: later processors repeat it.
    """
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    flags = next((fields[k] for k in _FLAG_KEYS if k in fields), None)
    return CPU(model=next((fields[k] for k in _MODEL_KEYS if fields.get(k)), None),
               flags=None if flags is None else frozenset(flags.split()),
               machine=machine, source=source)


def read_cpuinfo(path: str = CPUINFO, *, machine: str | None = None) -> CPU:
    """The CPU the file at `path` describes; where it cannot be read, what `platform` knows.

    Args:
        path: str, the cpuinfo file.
        machine: str, `platform.machine()` (for tests), or None for this host's.

    Returns:
        CPU; its `model` falls back to `platform.processor()`, and without
        the file its `flags` are None and its `source` is `platform`.
    """
    machine = machine or platform.machine()
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            cpu = parse_cpuinfo(f.read(), machine=machine, source=str(path))
    except OSError:
        cpu = CPU(model=None, flags=None, machine=machine, source="platform")
    return cpu if cpu.model else dataclasses.replace(cpu, model=platform.processor() or None)


@functools.cache
def this_cpu() -> CPU:
    """The CPU this process runs on, read from /proc/cpuinfo at the first call only."""
    return read_cpuinfo()


def cpu_flags() -> frozenset[str] | None:
    """This CPU's feature flags (`this_cpu().flags`); None where the system does not list them."""
    return this_cpu().flags
