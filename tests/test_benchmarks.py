"""Tests for benchmarks/: the quick mode runs every measurement and renders from its JSON.

No timing is asserted: timings belong to the benchmark's output, not to tests.
"""

import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quick_mode_measures_everything(tmp_path):
    result = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    [json_path] = tmp_path.glob("*-quick.json")
    data = json.loads(json_path.read_text())
    assert [t["model"] for t in data["training"]] == ["resnet50", "resnet20"]
    for t in data["training"]:
        assert 0 < t["ours"]["min"] <= t["ours"]["median"] <= t["ours"]["max"]
        ratios = np.divide(t["ours"]["rounds"], t["reference"]["rounds"])
        assert len(ratios) == data["settings"]["repeats"]
        assert t["ratio"] == np.median(ratios)
        # Our step in mixed_bfloat16, timed in the same turns as float32.
        assert t["bf16_speedup"] == np.median(np.divide(t["ours_bf16"]["rounds"],
                                                        t["ours"]["rounds"]))
    assert data["pipeline"]["images_per_second"]["median"] > 0
    [entry] = data["inference"]  # quick mode times resnet20 only
    assert list(entry["variants"]) == ["float32", "fp16", "dynamic", "int8"]
    assert list(entry["others"]) == ["int8 preprocessing only", "hand-built float32",
                                     "hand-built int8"]
    assert entry["variants"]["float32"]["size_vs_float32"] == 1.0
    assert entry["variants"]["int8"]["size_bytes"] < entry["variants"]["float32"]["size_bytes"]
    # resnet20's option-A shortcuts keep two 1x1 stride-2 MAX_POOL_2D off XNNPACK.
    expected = {"float32": (1, {}), "fp16": (1, {}), "dynamic": (1, {}),
                "int8": (1, {"QUANTIZE": 2, "SOFTMAX": 1}),
                "int8 preprocessing only": (1, {"QUANTIZE": 2}),
                "hand-built float32": (1, {}),
                "hand-built int8": (1, {"QUANTIZE": 2, "SOFTMAX": 1})}
    for key, file in {**entry["variants"], **entry["others"]}.items():
        assert (file["xnnpack"]["partitions"], file["xnnpack"]["not_delegated"]) == expected[key]
    assert set(entry["litert_tool"]) == {"float32", "int8"}
    assert entry["litert_tool"]["int8"]["median"] > 0
    assert set(data["targets"]) == {"train_ratio", "int8_latency_ratio", "int8_size_ratio"}
    markdown = json_path.with_suffix(".md").read_text()
    int8 = entry["variants"]["int8"]
    assert f"{int8['size_vs_float32']:.3f}" in markdown
    assert f"{data['training'][0]['ratio']:.2f}" in markdown
    assert f"{int8['xnnpack']['delegated']}/{int8['xnnpack']['ops']}" in markdown

    # --render measures nothing and gives the same Markdown from the JSON.
    md_path = json_path.with_suffix(".md")
    md_path.unlink()
    again = subprocess.run([sys.executable, "-m", "benchmarks", "--render", str(json_path)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    assert md_path.read_text() == markdown


def test_render_of_a_missing_file_is_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "benchmarks", "--render",
                             str(tmp_path / "none.json")], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: --render {tmp_path / 'none.json'} does not exist; "
        f"give a results/*.json file written by python -m benchmarks.")
