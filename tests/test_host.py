"""Tests for report/host.py: the CPU that measured latency and its int8 features."""

from cpuinfo_texts import AMX_XEON, ARM_PHONE, AVX2_XEON  # tests/ is on sys.path under pytest

from report import host
from resnet_keras.cpu import CPU, parse_cpuinfo


def test_an_amx_xeon_has_every_x86_int8_feature_but_avx_vnni():
    facts = host.cpu_facts(parse_cpuinfo(AMX_XEON, machine="x86_64"))
    assert facts == {"model": "Intel(R) Xeon(R) Platinum 8480+", "architecture": "x86_64",
                     "int8_features": ["avx2", "avx512bw", "avx512_vnni", "amx_int8"],
                     "int8_features_checked": ["avx2", "avx512bw", "avx512_vnni", "avx_vnni",
                                               "amx_int8"],
                     "source": "/proc/cpuinfo"}


def test_an_avx2_only_xeon_has_avx2_alone():
    facts = host.cpu_facts(parse_cpuinfo(AVX2_XEON, machine="x86_64"))
    assert facts["int8_features"] == ["avx2"]


def test_an_arm_phone_has_the_dot_product_and_int8_matrix_extensions():
    facts = host.cpu_facts(parse_cpuinfo(ARM_PHONE, machine="aarch64"))
    assert facts["model"] == "Qualcomm Technologies, Inc SM8550"
    assert facts["int8_features"] == ["asimd", "asimddp", "i8mm"]


def test_unknown_flags_and_unknown_architectures_say_so():
    unread = CPU(model=None, flags=None, machine="arm64", source="platform")
    assert host.cpu_facts(unread)["int8_features"] is None
    # RISC-V's cpuinfo lists no flags, and no int8 feature of it is looked for.
    riscv = host.cpu_facts(parse_cpuinfo("isa\t\t: rv64imafdcv\n", machine="riscv64"))
    assert riscv["int8_features"] is None and riscv["int8_features_checked"] == []
