"""Tests for report/host.py: the CPU and its int8 features, from /proc/cpuinfo or the platform."""

from report import host

X86 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx avx2 avx512f avx512bw avx512_vnni amx_tile amx_int8

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2
"""
ARM = """processor\t: 0
BogoMIPS\t: 48.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp asimddp i8mm
CPU implementer\t: 0x41
CPU part\t: 0xd0c

Hardware\t: Qualcomm Technologies, Inc SM8550
"""


def test_x86_features_come_from_the_first_processors_flags(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(X86)
    facts = host.cpu_facts(cpuinfo=path, machine="x86_64")
    assert facts["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert facts["int8_features"] == ["avx2", "avx512bw", "avx512_vnni", "amx_int8"]
    assert facts["int8_features_checked"] == list(host.INT8_FEATURES["x86"])
    assert facts["source"] == str(path) and facts["architecture"] == "x86_64"


def test_arm_features_and_the_hardware_line(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(ARM)
    facts = host.cpu_facts(cpuinfo=path, machine="aarch64")
    assert facts["model"] == "Qualcomm Technologies, Inc SM8550"
    assert facts["int8_features"] == ["asimd", "asimddp", "i8mm"]


def test_without_cpuinfo_the_platform_says_what_it_can(tmp_path):
    facts = host.cpu_facts(cpuinfo=tmp_path / "missing", machine="arm64")
    assert facts["source"] == "platform" and facts["int8_features"] is None
    assert facts["int8_features_checked"] == list(host.INT8_FEATURES["arm"])
    assert host.cpu_facts(cpuinfo=tmp_path / "missing", machine="riscv64")[
        "int8_features_checked"] == []
