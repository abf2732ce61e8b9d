"""Tests for benchmarks/: the quick mode runs every measurement and renders from its JSON.

No timing is asserted: timings belong to the benchmark's output, not to tests.
The figures made from timings (medians, images/s, ratios, targets) are checked
on given timings with hand-computed answers.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from cpuinfo_texts import AMX_XEON, AVX2_XEON  # tests/ is on sys.path under pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _measured(tmp_path, *flags, mode):
    """Runs `python -m benchmarks FLAGS --out tmp_path`; returns (its JSON's path, the JSON)."""
    result = subprocess.run([sys.executable, "-m", "benchmarks", *flags, "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    [json_path] = tmp_path.glob(f"*-{mode}.json")
    return json_path, json.loads(json_path.read_text())


# About 90 s: every benchmark at quick sizes; the peers' quick run below keeps the shared
# paths (our training model, turns, spread, paired ratios, rendering) in the default suite.
@pytest.mark.slow
def test_quick_mode_measures_everything(tmp_path):
    json_path, data = _measured(tmp_path, "--quick", mode="quick")
    assert [t["model"] for t in data["training"]] == ["resnet50", "resnet20"]
    for t in data["training"]:
        for column in ("ours", "ours_bf16", "ours_bare", "reference"):
            assert len(t[column]["rounds"]) == data["settings"]["repeats"]
            assert 0 < t[column]["min"] <= t[column]["median"] <= t[column]["max"]
    assert data["pipeline"]["images_per_second"]["median"] > 0
    # Each source's loader alone and feeding resnet20, from files in its own format.
    sources = data["sources"]
    assert [e["source"] for e in sources["sources"]] == ["folder", "cifar10", "fashion_mnist"]
    for e in sources["sources"]:
        loader = e["loader"]
        assert loader["first_pass"] > 0 and loader["later_passes"]["median"] > 0
        for rates in e["fed_training"].values():
            assert len(rates) == data["settings"]["sources"]["epochs"] and min(rates) > 0
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


def test_throughput_and_paired_ratio_from_given_timings():
    from benchmarks.timing import paired_ratio, throughput
    # 8 images in 2 s, 1 s and 4 s: 4, 8 and 2 images/s.
    ours = throughput([2.0, 1.0, 4.0], images=8)
    assert ours == {"median": 4.0, "min": 2.0, "max": 8.0, "rounds": [4.0, 8.0, 2.0]}
    # Round by round 4/2, 8/2, 2/4: the median of 2, 4 and 0.5, not 14/8 of the sums.
    assert paired_ratio(ours, {"rounds": [2.0, 2.0, 4.0]}) == 2.0


def test_a_training_rows_ratios_take_each_column_over_the_right_one():
    from benchmarks.training_speed import row_ratios
    rates = {"ours": {"rounds": [4, 8, 2]}, "reference": {"rounds": [2, 2, 4]},
             "ours_bare": {"rounds": [2, 4, 4]}, "ours_bf16": {"rounds": [12, 8, 8]}}
    assert row_ratios(rates) == {"ratio": 2.0,          # 2, 4, 0.5
                                 "bare_ratio": 1.0,     # 1, 2, 1
                                 "bf16_ratio": 4.0,     # 6, 4, 2
                                 "bf16_speedup": 3.0}   # 3, 1, 4


def test_a_loader_keeps_ahead_of_the_step_only_where_it_is_faster():
    from benchmarks.sources import keeps_ahead
    loader = {"first_pass": 150.0, "later_passes": {"median": 900.0, "min": 800.0, "max": 1e3}}
    assert keeps_ahead(loader, 686.0) == {"first_pass": False, "later_passes": True}
    assert keeps_ahead(loader, 900.0) == {"first_pass": False, "later_passes": False}


def test_the_targets_are_met_on_their_side_of_the_goal():
    from benchmarks.__main__ import targets
    result = {"training": [{"model": "resnet50", "ratio": 1.2},
                           {"model": "resnet20", "ratio": 0.9}],
              "inference": [{"model": "resnet50", "variants": {"int8": {
                  "latency_all_threads_vs_float32": 0.35, "size_vs_float32": 0.28}}}]}
    assert targets(result) == {
        "train_ratio": {"model": "resnet50", "value": 1.2, "target": ">= 1.0", "met": True},
        "resnet20_train_ratio": {"model": "resnet20", "value": 0.9, "target": ">= 1.0",
                                 "met": False},
        "int8_latency_ratio": {"model": "resnet50", "value": 0.35, "target": "<= 0.35",
                               "met": True},
        "int8_size_ratio": {"model": "resnet50", "value": 0.28, "target": "<= 0.27",
                            "met": False}}


def test_the_peers_row_from_given_process_rates():
    from benchmarks.peers import _summary, _targets
    processes = {
        "ours": [{"rates": [100, 120, 110], "stolen": 0.0, "version": "TensorFlow 2.21.0"},
                 {"rates": [90, 80, 100], "stolen": None, "version": "TensorFlow 2.21.0"}],
        "pytorch": [{"rates": [50, 60, 55], "stolen": 0.1, "version": "PyTorch 2.14.1"},
                    {"rates": [30, 36, 40], "stolen": 0.0, "version": "PyTorch 2.14.1"}]}
    row = _summary({"model": "resnet20", "image_size": 32, "batch_size": 8, "steps": 2,
                    **processes}, ["ours", "pytorch"])
    ours = row["ours"]
    # Each process's median (110, 90), their spread, and the spreads within processes.
    assert (ours["rounds"], ours["median"], ours["min"], ours["max"]) == ([110, 90], 100, 90, 110)
    assert ours["across_max_over_min"] == 110 / 90
    assert ours["within_max_over_min"] == 1.25  # 100/80 in the second process; 120/100 in the first
    assert ours["stolen"] == [0.0, None] and ours["reports"] == {"version": "TensorFlow 2.21.0"}
    # Process by process 110/55 = 2 and 90/36 = 2.5; oneDNN's ratios need columns not run.
    assert row["ratios"] == {"ours / PyTorch": {"median": 2.25, "min": 2.0, "max": 2.5,
                                                "over": "ours", "under": "pytorch"}}
    assert _targets([row]) == [{"model": "resnet20", "ratio": "ours / PyTorch", "value": 2.25,
                                "target": ">= 1.0", "met": True}]


@pytest.mark.parametrize("text, cpu, features", [
    (AVX2_XEON, "Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz", ["AVX2"]),
    (AMX_XEON, "Intel(R) Xeon(R) Platinum 8480+",
     ["AVX2", "AVX512F", "AVX512-VNNI", "AVX512-BF16", "AMX-BF16", "AMX-INT8"]),
])
def test_the_machine_names_the_cpu_and_its_features(text, cpu, features):
    from benchmarks.machine import machine_info
    from resnet_keras.cpu import parse_cpuinfo
    machine = machine_info(parse_cpuinfo(text, machine="x86_64"))
    assert machine["cpu"] == cpu and machine["cpu_features"] == features
    assert machine["tag"].startswith(f"x86_64-{os.cpu_count()}cpu")


def test_every_table_opens_with_the_machine_line():
    from benchmarks.render import _machine_line
    result = {"mode": "quick", "created": "2026-01-02T03:04:05+00:00", "machine": {
        "tag": "x86_64-2cpu", "cpu": "Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz", "cpu_count": 2,
        "cpu_features": ["AVX2"], "gpus": [], "tensorflow": "2.21.0",
        "onednn": {"on": True, "reason": "turned on by resnet_keras"}}}
    assert _machine_line(result) == (
        "Machine `x86_64-2cpu`: Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz (AVX2), 2 CPUs, no GPU; "
        "TensorFlow 2.21.0; oneDNN on (turned on by resnet_keras); mode `quick`; "
        "2026-01-02T03:04:05+00:00. Figures: median (min-max) over repeated timed runs after "
        "warm-up.")
    result["machine"].update(cpu_features=[], gpus=["NVIDIA H100"])
    assert ("(none of AVX2, AVX512, VNNI, BF16), 2 CPUs, GPUs: NVIDIA H100;"
            in _machine_line(result))


# About 95 s, mostly XLA compiling ResNet-50's train step on the CPU.
@pytest.mark.slow
def test_gpu_dry_run_measures_on_the_cpu_at_tiny_sizes(tmp_path):
    json_path, data = _measured(tmp_path, "--gpu", "--dry-run", mode="gpu-dry-run")
    assert [(t["model"], t["batch_size"]) for t in data["training"]] == [("resnet50", 2),
                                                                         ("resnet20", 4)]
    for t in data["training"]:
        assert set(t) >= {"float32", "mixed_float16_speedup", "mixed_float16_xla_speedup"}
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
    from benchmarks.models import bare_training_model, hand_built_resnet20
    from benchmarks.resnet20_differences import train_step_ops
    from resnet_keras import build_model

    hand = hand_built_resnet20(image_size=32, classes=10, normalization=True, explicit_pad=True,
                               option_a=True)
    ours = bare_training_model("resnet20", image_size=32, classes=10)
    assert sorted(tuple(w.shape) for w in hand.trainable_weights) == sorted(
        tuple(w.shape) for w in ours.trainable_weights)
    assert hand.count_params() == ours.count_params() == build_model("resnet20").count_params()
    sizes = {"image_size": 32, "batch_size": 4, "classes": 10}
    assert train_step_ops(ours, **sizes) == train_step_ops(hand, **sizes)
    plain = hand_built_resnet20(image_size=32, classes=10)
    assert train_step_ops(plain, **sizes) != train_step_ops(hand, **sizes)


# About 30 s: two TensorFlow processes and two PyTorch ones at tiny sizes.
def test_peers_time_each_framework_in_processes_of_its_own(tmp_path):
    json_path, data = _measured(tmp_path, "--peers", "--quick", mode="peers-quick")
    from benchmarks.peers import SETTINGS
    from resnet_keras.backend import ONEDNN
    assert list(data["columns"]) == list(SETTINGS["peers-quick"]["columns"])
    [row] = data["training"]
    processes = data["settings"]["processes"]
    for key in data["columns"]:
        column = row[key]
        assert len(column["rounds"]) == len(column["within"]) == len(column["stolen"]) == processes
        assert all(share is None or 0 <= share <= 1 for share in column["stolen"])
    # Each process says what it ran: the oneDNN state TensorFlow itself reports there.
    assert row["ours"]["reports"]["onednn"] == ONEDNN.to_dict()
    assert row["pytorch"]["reports"]["version"].startswith("PyTorch ")
    ratio = row["ratios"]["ours / PyTorch"]
    [target] = data["targets"]
    assert target["ratio"] == "ours / PyTorch" and target["value"] == ratio["median"]
    markdown = json_path.with_suffix(".md").read_text()
    assert f"| {ratio['median']:.2f} ({ratio['min']:.2f}-{ratio['max']:.2f}) |" in markdown
    assert markdown.startswith(f"Machine `{data['machine']['tag']}`: ")
    # A quick run's figures never go into the README.
    again = subprocess.run([sys.executable, "-m", "benchmarks", "--render", str(json_path),
                            "--readme"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2


def test_peers_with_a_python_that_has_no_torch_is_one_line_error(tmp_path):
    missing = tmp_path / "no-such-python"
    result = subprocess.run([sys.executable, "-m", "benchmarks", "--peers", "--quick",
                             "--torch-python", str(missing), "--out", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: --torch-python {missing} cannot run: No such file or directory")
    assert not list(tmp_path.glob("*.json"))


def test_the_bfloat16_columns_run_only_where_the_cpu_computes_bfloat16():
    from benchmarks.peers import COLUMNS, columns
    assert columns("peers", bf16=True) == list(COLUMNS)
    assert "ours_bf16" not in columns("peers", bf16=False)
    assert "pytorch_bf16" not in columns("peers", bf16=False)


def test_the_pytorch_resnet20_has_our_resnet20s_trainable_weights():
    torch = pytest.importorskip("torch")
    from benchmarks.peer import _torch_resnet20
    from resnet_keras import build_model
    ours = build_model("resnet20", input_shape=(32, 32, 3), classes=10)
    theirs = _torch_resnet20(10)
    trainable = sum(int(np.prod(w.shape)) for w in ours.trainable_weights)
    assert sum(p.numel() for p in theirs.parameters()) == trainable
    assert tuple(theirs(torch.zeros(2, 3, 32, 32)).shape) == (2, 10)


@pytest.mark.parametrize("ratio, words", [(1.5, "Hence `resnet_keras/backend.py` turns oneDNN on"),
                                          (0.9, "**Not faster on every net here")])
def test_the_onednn_default_is_stated_from_the_measured_ratio(ratio, words):
    from benchmarks.render import _onednn_decision
    training = [{"model": "resnet20", "ratios": {"oneDNN on AVX2 kernels / off": {
        "median": ratio}}}, {"model": "resnet50", "ratios": {}}]
    [sentence, _] = _onednn_decision(training)
    assert f"resnet20 {ratio:.2f}x" in sentence and words in sentence
    assert _onednn_decision([{"model": "resnet20", "ratios": {}}]) == []


# About 35 s: the stall, the loaders and one train stage, at tiny sizes.
@pytest.mark.slow
def test_teardown_quick_mode_measures_both_settings_in_turns(tmp_path):
    json_path, data = _measured(tmp_path, "--teardown", "--quick", mode="teardown-quick")
    s = data["settings"]
    for setting in ("off", "on"):
        stall = data["stall"][setting]
        assert len(stall["stall_seconds"]) == len(stall["epoch_seconds"]) == s["stall"]["runs"]
        assert all(len(epochs) == s["stall"]["epochs"] for epochs in stall["epoch_seconds"])
    assert [r["source"].split()[0] for r in data["loaders"]] == [
        "folder", "folder", "CIFAR-10", "Fashion-MNIST", "TensorFlow"]
    for row in data["loaders"]:
        assert row["off"]["first_pass"] > 0 and row["on"]["later_passes"]["median"] > 0
    assert len(data["loaders"][-1]["read_seconds"]["off"]) == 3
    [run] = data["train_stage"]["this checkout"]
    assert run["images_per_second"] > 0 and run["train_seconds"] <= run["seconds"]
    assert "### The train stage" in json_path.with_suffix(".md").read_text()


def test_the_train_log_gives_the_stage_and_when_its_epochs_ended():
    from benchmarks.teardown import parse_train_log
    epoch = "  epoch {}/2  loss 2.3  top-1 0.1  test top-1 0.1  lr 0.1  [{}]"
    before = "\n".join([epoch.format(1, "20 s"), epoch.format(2, "45 s"),
                        "[train] done in 87.6 s: test top-1 0.1000, images/s 141"])
    after = "\n".join([epoch.format(1, "train 5.2 s, test 0.4 s; 21 s"),
                       epoch.format(2, "train 5.0 s, test 0.4 s; 44 s"),
                       "[train] done in 48.0 s: test top-1 0.1000, images/s 266"])
    assert parse_train_log(before) == {"stage_seconds": 87.6, "epochs_end_seconds": 45,
                                       "after_epochs_seconds": 42.6}
    assert parse_train_log(after)["after_epochs_seconds"] == 4.0
    with pytest.raises(ValueError, match="no epoch line"):
        parse_train_log("[train] done in 1.0 s")


def test_the_options_of_one_mode_are_refused_in_another(tmp_path):
    for flags, words in ((["--baseline", str(tmp_path)], "--baseline goes with --teardown"),
                         (["--teardown", "--baseline", str(tmp_path)], "not a checkout"),
                         (["--teardown", "--peers"], "separate modes"),
                         (["--resnet20-only"], "go with --peers"),
                         (["--peers", "--quick", "--resnet20-only"], "already measures")):
        result = subprocess.run([sys.executable, "-m", "benchmarks", *flags, "--out",
                                 str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 2 and words in result.stderr
