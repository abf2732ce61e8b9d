"""/proc/cpuinfo texts of known CPUs, for the tests of what is read from them.

Used by tests/test_cpu.py (the reading), test_backend.py (oneDNN),
test_host.py (the report's int8 features) and test_benchmarks.py (the
machine line).
"""

# An AVX2-only Xeon (Haswell): where TensorFlow leaves oneDNN off; its second processor
# lists fewer flags, which must not be read.
AVX2_XEON = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz
flags\t\t: fpu sse2 avx fma avx2
vmx flags\t: vnmi preemption_timer

processor\t: 1
model name\t: Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz
flags\t\t: fpu sse2
"""
# A Sapphire Rapids Xeon with AMX.
AMX_XEON = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu avx2 avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""
# An Android phone: `Features`, and the name on a `Hardware` line at the end.
ARM_PHONE = """processor\t: 0
BogoMIPS\t: 48.00
Features\t: fp asimd evtstrm aes asimddp i8mm
CPU implementer\t: 0x41

Hardware\t: Qualcomm Technologies, Inc SM8550
"""
