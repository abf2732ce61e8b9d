"""Tests for export/edgetpu.py (the documented-rules check) and export/edgetpu_compiler.py."""

import os
import stat
import textwrap

import numpy as np
import pytest

import resnet_keras as rk
from export import edgetpu, edgetpu_compiler, tflite
from resnet_keras.backend import keras

layers = keras.layers


def _convert(model, *, int8, n=2):
    images = np.random.default_rng(0).uniform(
        0, 255, (n, *model.input_shape[1:])).astype(np.float32)
    return tflite.convert(model, "int8" if int8 else "float32", calibration_images=images)


@pytest.fixture(scope="module")
def resnet20_files(tmp_path_factory):
    model = rk.build_model("resnet20", classes=10)
    folder = tmp_path_factory.mktemp("resnet20")
    paths = {}
    for variant, int8 in (("int8", True), ("float32", False)):
        paths[variant] = folder / f"resnet20_{variant}.tflite"
        paths[variant].write_bytes(_convert(model, int8=int8))
    return paths


@pytest.fixture
def no_compiler(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))


def test_resnet20_int8_is_compatible(resnet20_files, no_compiler):
    result = edgetpu.check(resnet20_files["int8"])
    unsupported = [(op["index"], op["op"], op["reason"]) for op in result["ops"]
                   if not op["supported"]]
    assert unsupported == []
    assert result["compatible"] and result["first_cpu_op"] is None
    assert result["mapped_ops_estimate"] == result["total_ops"] == len(result["ops"])
    names = [op["op"] for op in result["ops"]]
    # uint8 IO: the converter adds uint8<->int8 QUANTIZE at both ends, mapped by the TPU.
    assert names[0] == names[-1] == "QUANTIZE" and "DEQUANTIZE" not in names
    assert "UINT8 to INT8" in result["ops"][0]["reason"]
    # The input Normalization stays integer: int8 SUB and MUL right after the input.
    assert names[1:3] == ["SUB", "MUL"]
    assert "preprocess_normalize" in result["ops"][1]["output"]
    assert set(names) <= set(edgetpu.SUPPORTED_OPS)
    assert all(op["placement"] == "edgetpu" for op in result["ops"])
    assert any("QUANTIZE" in note for note in result["notes"])
    # export.tflite pins batch 1, so no dynamic-batch warning.
    assert not any("dynamic batch" in note for note in result["notes"])
    # Option-A shortcuts are int8 CONV_2D ops (a fixed 1x1 stride-2 conv), mapped.
    assert [op["op"] for op in result["ops"] if "_0_subsample" in op["output"]] == ["CONV_2D"] * 2
    assert result["compiler"]["available"] is False
    assert "edgetpu_compiler" in result["compiler"]["reason"]


def test_op_versions_are_checked_against_the_compiler_limits(resnet20_files, no_compiler):
    ops = edgetpu.check(resnet20_files["int8"])["ops"]
    # TF 2.21 writes versions edgetpu_compiler 16.0 knows for resnet20's int8 ops.
    assert all(op["max_version"] is not None and op["version"] <= op["max_version"]
               and not op["version_refused"] for op in ops)
    conv = next(op for op in ops if op["op"] == "CONV_2D")
    assert conv["max_version"] == 5 and "runtime_version.cc" in conv["max_version_source"]
    assert "google-coral/edgetpu#631" in conv["max_version_source"]
    assert edgetpu.version_limit("CUSTOM:Foo") == (None, None)


def test_an_op_above_its_version_limit_is_refused(resnet20_files, no_compiler, monkeypatch):
    monkeypatch.setitem(edgetpu.MAX_OP_VERSIONS, "CONV_2D", 0)
    result = edgetpu.check(resnet20_files["int8"])
    refused = [op for op in result["ops"] if op["version_refused"]]
    assert refused and all(op["op"] == "CONV_2D" and not op["supported"] for op in refused)
    assert "newer than version 0" in refused[0]["reason"]
    assert "TensorFlow 2.5" in refused[0]["reason"]
    # The compiler refuses the whole file: nothing maps.
    assert not result["compatible"] and result["first_cpu_op"] == refused[0]["index"]
    assert result["mapped_ops_estimate"] == 0
    assert all(op["placement"] == "cpu" for op in result["ops"])
    assert any("refuses the whole file" in note for note in result["notes"])


def test_float32_is_incompatible_from_the_first_op(resnet20_files, no_compiler):
    result = edgetpu.check(resnet20_files["float32"], run_compiler=False)
    assert not result["compatible"]
    assert result["first_cpu_op"] == 0 and result["mapped_ops_estimate"] == 0
    first = result["ops"][0]
    assert not first["supported"] and "FLOAT32" in first["reason"]
    assert "not 8-bit quantized" in first["reason"]
    assert all(op["placement"] == "cpu" for op in result["ops"])
    assert result["compiler"] is None


def test_unsupported_op_is_reported_not_raised(tmp_path, no_compiler):
    inputs = layers.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same")(inputs)
    x = layers.LeakyReLU(0.1)(x)
    x = layers.Conv2D(4, 3, padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(3, activation="softmax")(x)
    path = tmp_path / "leaky.tflite"
    path.write_bytes(_convert(keras.Model(inputs, outputs), int8=True))
    result = edgetpu.check(path)
    leaky = next(op for op in result["ops"] if op["op"] == "LEAKY_RELU")
    assert not leaky["supported"]
    assert "not in the Edge TPU's supported operations" in leaky["reason"]
    assert result["first_cpu_op"] == leaky["index"] and not result["compatible"]
    placements = [op["placement"] for op in result["ops"]]
    assert placements == ["edgetpu"] * leaky["index"] + ["cpu"] * (len(placements) - leaky["index"])


def test_not_a_tflite_file(tmp_path):
    path = tmp_path / "junk.tflite"
    path.write_bytes(b"this is not a flatbuffer at all")
    with pytest.raises(ValueError, match="junk.tflite is not a TFLite model.*TFL3"):
        edgetpu.check(path)
    with pytest.raises(FileNotFoundError):
        edgetpu.check(tmp_path / "missing.tflite")


# The real compiler's stdout and log layout (Edge TPU Compiler 16).
_FULL_STDOUT = """\
Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 412 ms.

Input model: {model}
Input size: 297.30KiB
Output model: {out}/{stem}_edgetpu.tflite
Output size: 412.51KiB
On-chip memory used for caching model parameters: 318.25KiB
On-chip memory remaining for caching model parameters: 7.62MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 41
Operation log: {out}/{stem}_edgetpu.log
See the operation log file for individual operation details.
Compilation child process completed within timeout period.
Compilation succeeded!
"""
_FULL_LOG = """\
Edge TPU Compiler version 16.0.384591198
Input: {model}
Output: {out}/{stem}_edgetpu.tflite

Operator                       Count      Status

QUANTIZE                       2          Mapped to Edge TPU
SUB                            1          Mapped to Edge TPU
MUL                            1          Mapped to Edge TPU
CONV_2D                        19         Mapped to Edge TPU
ADD                            9          Mapped to Edge TPU
MAX_POOL_2D                    2          Mapped to Edge TPU
PAD                            4          Mapped to Edge TPU
MEAN                           1          Mapped to Edge TPU
FULLY_CONNECTED                1          Mapped to Edge TPU
SOFTMAX                        1          Mapped to Edge TPU
"""
_PARTIAL_STDOUT = _FULL_STDOUT.replace(
    "See the operation log file", """\
Model successfully compiled but not all operations are supported by the Edge TPU. \
A percentage of the model will instead run on the CPU, which is slower. \
If possible, consider updating your model to use only operations supported by the Edge TPU. \
For details, visit g.co/coral/model-reqs.
Number of operations that will run on Edge TPU: 39
Number of operations that will run on CPU: 2

Operator                       Count      Status

QUANTIZE                       1          Mapped to Edge TPU
QUANTIZE                       1          Operation is otherwise supported, but not mapped \
due to some unspecified limitation
SOFTMAX                        1          More than one subgraph is not supported
CONV_2D                        19         Mapped to Edge TPU
ADD                            9          Mapped to Edge TPU
See the operation log file""")


def _fake_compiler(folder, stdout, log, *, exit_code=0):
    """An `edgetpu_compiler` shell script that writes its files like the real one."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "edgetpu_compiler"
    script.write_text(textwrap.dedent("""\
        #!/bin/sh
        out=.
        while [ $# -gt 1 ]; do
          case "$1" in
            -o|--out_dir) out="$2"; shift 2 ;;
            *) shift ;;
          esac
        done
        model="$1"
        stem=$(basename "$model" .tflite)
        if [ {exit_code} -ne 0 ]; then
          echo "ERROR: Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'"
          exit {exit_code}
        fi
        cp "$model" "$out/${{stem}}_edgetpu.tflite"
        cat > "$out/${{stem}}_edgetpu.log" <<'LOG'
        {log}
        LOG
        cat <<'STDOUT'
        {stdout}
        STDOUT
        """).format(exit_code=exit_code, log=log, stdout=stdout))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def _fill(template, model, out):
    return template.format(model=model, out=out, stem=model.stem)


@pytest.mark.parametrize("scenario", ["full", "partial", "error"])
def test_compiler_output_is_parsed(scenario, resnet20_files, tmp_path, monkeypatch):
    model = tmp_path / "resnet20_int8.tflite"
    model.write_bytes(resnet20_files["int8"].read_bytes())
    out = tmp_path / "compiled"
    stdout = _FULL_STDOUT if scenario != "partial" else _PARTIAL_STDOUT
    _fake_compiler(tmp_path / "bin", _fill(stdout, model, out), _fill(_FULL_LOG, model, out),
                   exit_code=1 if scenario == "error" else 0)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")

    result = edgetpu.check(model, out_dir=out)
    compiler = result["compiler"]
    assert compiler["available"] and compiler["ran"]
    if scenario == "error":
        assert not compiler["ok"] and compiler["path"] is None
        assert "FULLY_CONNECTED" in compiler["reason"] and not result["compatible"]
        return
    assert compiler["ok"] and compiler["version"] == "16.0.384591198"
    assert compiler["path"] == str(out / "resnet20_int8_edgetpu.tflite")
    assert (out / "resnet20_int8_edgetpu.tflite").is_file()
    assert compiler["total_ops"] == 41 and compiler["subgraphs"] == 1
    if scenario == "full":
        # No "will run on Edge TPU" line when all ops map: counted from the log's table.
        assert compiler["mapped_ops"] == 41 and compiler["cpu_ops"] == 0
        assert len(compiler["operators"]) == 10
        assert result["compatible"]
    else:
        assert compiler["mapped_ops"] == 39 and compiler["cpu_ops"] == 2
        statuses = {row["status"] for row in compiler["operators"]}
        assert "More than one subgraph is not supported" in statuses
        # The rules pass, but the compiler has the last word.
        assert result["first_cpu_op"] is None and not result["compatible"]


def test_compiler_missing_is_reported_not_raised(resnet20_files, no_compiler):
    result = edgetpu_compiler.run(resnet20_files["int8"])
    assert result["available"] is False and result["ran"] is False
    assert "coral.ai/docs/edgetpu/compiler" in result["reason"]


def test_parse_compiler_output_reads_a_repeated_table_once():
    log = _FULL_LOG.format(model="m.tflite", out="o", stem="m")
    parsed = edgetpu_compiler.parse_compiler_output(log + "\n" + log)
    assert parsed["version"] == "16.0.384591198" and len(parsed["operators"]) == 10
    # No summary lines: totals come from the table's counts.
    assert parsed["total_ops"] == parsed["mapped_ops"] == 41 and parsed["cpu_ops"] == 0
    assert parsed["subgraphs"] is None
