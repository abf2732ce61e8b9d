"""Tests for resnet_keras/cpu.py: the CPU's name, architecture and flags, from cpuinfo text."""

import pytest
from cpuinfo_texts import AMX_XEON, ARM_PHONE, AVX2_XEON  # tests/ is on sys.path under pytest

from resnet_keras import cpu


@pytest.mark.parametrize("text, machine, model, flags, architecture", [
    (AVX2_XEON, "x86_64", "Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz",
     {"fpu", "sse2", "avx", "fma", "avx2"}, "x86"),
    (AMX_XEON, "AMD64", "Intel(R) Xeon(R) Platinum 8480+",
     {"fpu", "avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile",
      "amx_int8"}, "x86"),
    (ARM_PHONE, "aarch64", "Qualcomm Technologies, Inc SM8550",
     {"fp", "asimd", "evtstrm", "aes", "asimddp", "i8mm"}, "arm"),
    ("processor\t: 0\n", "riscv64", None, None, None),
])
def test_cpuinfo_text_gives_the_first_processors_name_and_flags(text, machine, model, flags,
                                                                architecture):
    parsed = cpu.parse_cpuinfo(text, machine=machine)
    assert parsed.model == model
    assert parsed.flags == (None if flags is None else frozenset(flags))
    assert parsed.architecture == architecture
    assert parsed.source == "/proc/cpuinfo"


def test_a_file_is_read_and_a_missing_one_leaves_the_flags_unknown(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(AMX_XEON)
    read = cpu.read_cpuinfo(path, machine="x86_64")
    assert read == cpu.parse_cpuinfo(AMX_XEON, machine="x86_64", source=str(path))
    missing = cpu.read_cpuinfo(tmp_path / "missing", machine="x86_64")
    assert missing.flags is None and missing.source == "platform"


def test_this_cpu_is_read_once():
    assert cpu.this_cpu() is cpu.this_cpu()
    assert cpu.cpu_flags() is cpu.this_cpu().flags
