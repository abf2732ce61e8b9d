"""Tests for benchmarks/: the quick mode runs every measurement and renders from its JSON.

No timing is asserted: timings belong to the benchmark's output, not to tests.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# About 90 s: every benchmark at quick sizes; the GPU dry run below keeps the shared paths in
# the default suite.
@pytest.mark.slow
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
    # Each source's loader alone and feeding resnet20, from files in its own format.
    sources = data["sources"]
    assert [e["source"] for e in sources["sources"]] == ["folder", "cifar10", "fashion_mnist"]
    assert sources["train_step"] == data["training"][1][
        "ours_bf16" if sources["policy"] == "mixed_bfloat16" else "ours"]["median"]
    for e in sources["sources"]:
        loader = e["loader"]
        assert loader["first_pass"] > 0 and loader["later_passes"]["median"] > 0
        for rates in e["fed_training"].values():
            assert len(rates) == data["settings"]["sources"]["epochs"] and min(rates) > 0
        assert e["keeps_ahead"] == {
            "first_pass": loader["first_pass"] > sources["train_step"],
            "later_passes": loader["later_passes"]["median"] > sources["train_step"]}
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
    assert set(data["targets"]) == {"train_ratio", "resnet20_train_ratio", "int8_latency_ratio",
                                    "int8_size_ratio"}
    differences = data["resnet20_differences"]
    assert list(differences) == ["hand-built", "+ Normalization layer", "+ explicit padding",
                                 "+ option-A shortcut", "+ all three", "ours bare"]
    assert differences["hand-built"]["ratio"] == 1.0
    assert differences["+ all three"]["ops"] == differences["ours bare"]["ops"]
    for r in differences.values():
        assert r["ratio"] == np.median(np.divide(r["rounds"],
                                                 differences["hand-built"]["rounds"]))
    markdown = json_path.with_suffix(".md").read_text()
    int8 = entry["variants"]["int8"]
    assert f"{int8['size_vs_float32']:.3f}" in markdown
    assert f"{data['training'][0]['ratio']:.2f}" in markdown
    assert f"{int8['xnnpack']['delegated']}/{int8['xnnpack']['ops']}" in markdown
    assert f"| {sources['sources'][2]['num_train']:,} | " in markdown

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


def test_gpu_dry_run_measures_on_the_cpu_at_tiny_sizes(tmp_path):
    result = subprocess.run([sys.executable, "-m", "benchmarks", "--gpu", "--dry-run", "--out",
                             str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    [json_path] = tmp_path.glob("*-gpu-dry-run.json")
    data = json.loads(json_path.read_text())
    assert [(t["model"], t["batch_size"]) for t in data["training"]] == [("resnet50", 2),
                                                                         ("resnet20", 4)]
    for t in data["training"]:
        for column in ("mixed_float16", "mixed_float16_xla"):
            assert t[f"{column}_speedup"] == np.median(np.divide(t[column]["rounds"],
                                                                 t["float32"]["rounds"]))
    stage = data["train_stage"]
    assert stage["dataset"] == "digits" and stage["epochs"] == 1
    assert stage["images_per_second"] > 0 and 0 <= stage["test_top1"] <= 1
    markdown = json_path.with_suffix(".md").read_text()
    assert "Dry run on the CPU" in markdown
    assert f"{data['training'][1]['mixed_float16_xla_speedup']:.2f}" in markdown
    assert "A100-40GB" in markdown

    # A dry run's figures never go into the README.
    again = subprocess.run([sys.executable, "-m", "benchmarks", "--render", str(json_path),
                            "--readme"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1] == (
        f"error: --readme takes measured figures only; {json_path} is a gpu-dry-run run.")


def test_gpu_mode_without_a_gpu_says_to_dry_run(tmp_path):
    result = subprocess.run([sys.executable, "-m", "benchmarks", "--gpu", "--out",
                             str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: TensorFlow sees no GPU here; run `python -m benchmarks --gpu --dry-run` to "
        "check the code on the CPU.")
    assert not list(tmp_path.iterdir())


def test_our_resnet20_trains_the_graph_of_the_hand_built_one_with_our_differences():
    """Our network adds no op to a train step over a hand-built one doing what it does."""
    from benchmarks import measure
    from resnet_keras import build_model

    hand = measure.hand_built_resnet20(image_size=32, classes=10, normalization=True,
                                       explicit_pad=True, option_a=True)
    ours = measure.bare_training_model("resnet20", image_size=32, classes=10)
    assert sorted(tuple(w.shape) for w in hand.trainable_weights) == sorted(
        tuple(w.shape) for w in ours.trainable_weights)
    assert hand.count_params() == ours.count_params() == build_model("resnet20").count_params()
    sizes = {"image_size": 32, "batch_size": 4, "classes": 10}
    assert measure.train_step_ops(ours, **sizes) == measure.train_step_ops(hand, **sizes)
    plain = measure.hand_built_resnet20(image_size=32, classes=10)
    assert measure.train_step_ops(plain, **sizes) != measure.train_step_ops(hand, **sizes)
