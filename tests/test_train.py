"""Tests for train.py, pipeline.py and training/: configuration, plan, run directory, stages,
resume after kill -9, NaN, scale-out."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from job import config as config_lib
from job import pipeline
from rundir import RunDir, model_files
from training.plan import TrainingPlan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A few quick steps: enough to exercise the mechanism, not to learn.
QUICK = ["--train.epochs", "2", "--train.steps_per_epoch", "4", "--train.batch_size", "16"]


def run_train(args, *, env=None, timeout=300):
    return subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                          env={**os.environ, **(env or {})})


# ---- configuration ----

def test_presets_resolve_to_the_papers_recipes():
    cifar = config_lib.resolve("cifar10-paper")
    assert (cifar.train.batch_size, cifar.train.learning_rate, cifar.train.weight_decay) == \
        (128, 0.1, 1e-4)
    # 32k, 48k and 64k iterations at 45,000 / 128 = 351.6 iterations per epoch.
    steps = 45_000 / 128
    assert [round(e * steps, -3) for e in (*cifar.train.lr_decay_epochs, cifar.train.epochs)] == \
        [32_000, 48_000, 64_000]
    assert cifar.data.val_split == 5000
    imagenet = config_lib.resolve("imagenet-paper")
    assert (imagenet.train.batch_size, imagenet.train.epochs, imagenet.train.lr_decay_epochs) == \
        (256, 90, (30, 60))


def test_overrides_file_and_precedence(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 7\n  batch_size: 32\nmodel:\n  name: resnet32\n")
    config = config_lib.resolve("digits", file=str(path), overrides={"train.epochs": "3"})
    assert (config.train.epochs, config.train.batch_size, config.model.name) == (3, 32, "resnet32")
    config = config_lib.resolve(overrides={"stages": "train,qat",
                                           "train.lr_decay_epochs": "10,20.5"})
    assert config.stages == ("train", "qat")
    assert config.train.lr_decay_epochs == (10.0, 20.5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(preset="cifar11"), "Valid presets: digits, cifar10-paper, imagenet-paper"),
    (dict(overrides={"train.epoch": "3"}), "Unknown configuration key 'train.epoch'"),
    (dict(overrides={"train.epochs": "many"}), "not a valid float"),
    (dict(overrides={"stages": "train,deploy"}), "Valid values: train, qat, export, report"),
    (dict(overrides={"train.batch_size": "0"}), "must be >= 1"),
    (dict(overrides={"train.schedule": "linear"}), "Valid values: cosine, step, constant"),
    (dict(overrides={"data.val_split": "some"}), "data.val_split='some' is not a number"),
    (dict(overrides={"export.variants": ""}), "export.variants is empty"),
    (dict(overrides={"data.dataset": "imagenet"}), "Valid values: digits, cifar10, cifar100"),
])
def test_bad_configuration_has_clear_messages(kwargs, match):
    with pytest.raises(ValueError, match=match):
        config_lib.resolve(**kwargs)


def test_help_lists_every_key_with_default():
    result = run_train(["--help"], timeout=60)
    assert result.returncode == 0
    for key in ("--train.epochs", "--model.name", "--qat.learning_rate", "--export.variants"):
        assert key in result.stdout
    assert "default: resnet20" in result.stdout


def test_val_split_keeps_a_count_an_int(tmp_path):
    """5000 from the command line, a YAML file or a preset is the count 5000, not 5000.0."""
    assert repr(config_lib.resolve(overrides={"data.val_split": "5000"}).data.val_split) == "5000"
    assert repr(config_lib.resolve(overrides={"data.val_split": "0.1"}).data.val_split) == "0.1"
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  val_split: 5000\n")
    assert repr(config_lib.resolve(file=str(path)).data.val_split) == "5000"
    saved = config_lib.to_dict(config_lib.resolve("cifar10-paper"))
    assert repr(config_lib.from_dict(json.loads(json.dumps(saved))).data.val_split) == "5000"


class _Data:
    """The two numbers a plan needs of a dataset."""
    name, num_train = "tiny", 1000


def test_training_plan_scales_the_rate_and_counts_steps():
    config = config_lib.resolve(overrides={"train.batch_size": "64",
                                           "train.reference_batch_size": "64",
                                           "train.learning_rate": "0.1", "train.epochs": "2.5"})
    plan = TrainingPlan.for_training(config.train, _Data, replicas=2)
    assert (plan.global_batch, plan.steps_per_epoch, plan.epochs) == (128, 8, 3)
    assert plan.learning_rate == pytest.approx(0.2)  # linear scaling, Goyal et al.
    qat = TrainingPlan.for_qat(config.qat, _Data, replicas=2,
                              reference_batch_size=config.train.reference_batch_size)
    assert (qat.global_batch, qat.schedule, qat.warmup_epochs) == (128, "cosine", 0.0)
    assert qat.learning_rate == pytest.approx(config.qat.learning_rate * 2)
    with pytest.raises(ValueError, match=r"larger than the training set \(1000 images of tiny"):
        TrainingPlan.for_training(config.train, _Data, replicas=16)
    with pytest.raises(ValueError, match="must end before the first learning-rate decay"):
        TrainingPlan.build(batch_size=8, replicas=1, num_train=100, epochs=4, learning_rate=0.1,
                           reference_batch_size=8, schedule="step", lr_decay_epochs=(2,),
                           warmup_epochs=2)


def test_learning_rate_schedules():
    config = config_lib.resolve("cifar10-paper")
    plan = TrainingPlan.build(batch_size=128, replicas=1, num_train=12_800, epochs=182,
                              learning_rate=0.1, reference_batch_size=128, schedule="step",
                              lr_decay_epochs=config.train.lr_decay_epochs)
    schedule = plan.learning_rate_schedule()
    assert [round(float(schedule(s)), 6) for s in (0, 9099, 9101, 13700)] == \
        [0.1, 0.1, 0.01, 0.001]
    plan = TrainingPlan.build(batch_size=10, replicas=1, num_train=100, epochs=20,
                              learning_rate=0.1, reference_batch_size=10, schedule="cosine",
                              warmup_epochs=1)
    schedule = plan.learning_rate_schedule()
    assert float(schedule(0)) == pytest.approx(0.01)
    assert float(schedule(10)) == pytest.approx(0.1)
    assert float(schedule(200)) == pytest.approx(0.0, abs=1e-6)


def test_run_dir_names_every_file_once(tmp_path):
    run = RunDir(tmp_path / "r")
    paths = [run.lock, run.config, run.state, run.timing, run.history, run.training_curve,
             run.last_model, run.best_model, run.backup, run.logs, run.train_result,
             run.head_model, run.qat_model, run.qat_result, run.export_dir, run.manifest,
             run.report_json,
             run.report_markdown, run.report_chart, run.android_dir]
    assert len(set(paths)) == len(paths)
    assert all(p.startswith(str(tmp_path / "r")) for p in paths)
    with pytest.raises(FileNotFoundError, match=r"has no QAT model \(qat.keras\). Run the qat "
                                                r"stage first: python train.py --stages qat"):
        run.require(run.qat_model, what="QAT model", stage="qat")
    run.write_json(run.manifest, {"int8": "m_int8.tflite"})
    assert run.read_json(run.manifest) == {"int8": "m_int8.tflite"}
    assert not os.path.exists(run.manifest + ".partial")


def test_a_resumed_run_drops_the_rows_of_epochs_it_trains_again(tmp_path):
    from training.loop import _keep_history_before
    history = tmp_path / "history.csv"
    history.write_text("epoch,accuracy,loss\n0,0.5,1.0\n1,0.6,0.9\n2,0.7,0.8\n")
    _keep_history_before(str(history), 2)  # the backup is from inside epoch 2 (0-based)
    assert history.read_text() == "epoch,accuracy,loss\n0,0.5,1.0\n1,0.6,0.9\n"
    _keep_history_before(str(history), 0)  # no backup: the run starts over
    assert history.read_text() == "epoch,accuracy,loss\n"


def test_stages_run_in_order_and_a_resume_skips_finished_ones(tmp_path, monkeypatch):
    calls = []
    for stage in config_lib.STAGES:
        monkeypatch.setitem(pipeline.STAGE_FUNCTIONS, stage,
                            lambda job, stage=stage: calls.append(stage) or {})
    config = config_lib.resolve(overrides={"stages": "report,train"})
    run = RunDir(tmp_path / "run")
    pipeline.run(config, run)
    assert calls == ["train", "report"]
    assert run.read_json(run.state) == {"completed": ["train", "report"]}
    config = config_lib.resolve()
    pipeline.run(config, run, skip_completed=True)
    assert calls == ["train", "report", "qat", "export"]
    assert run.read_json(run.config)["stages"] == list(config_lib.STAGES)
    # Stage times accumulate over invocations: the first run's stages are kept.
    assert list(run.read_json(run.timing)["stages"]) == list(config_lib.STAGES)


# ---- training precision ----

@pytest.mark.parametrize("setting, hardware, policy, reason", [
    ("auto", {"flags": {"avx512_bf16"}}, "mixed_bfloat16", "CPU with AVX512-BF16"),
    ("auto", {"flags": {"amx_bf16", "avx512_bf16"}}, "mixed_bfloat16",
     "CPU with AMX-BF16 and AVX512-BF16"),
    ("auto", {"flags": {"avx2"}}, "float32", "neither AMX-BF16 nor AVX512-BF16"),
    ("on", {"flags": {"avx2"}}, "mixed_bfloat16", "emulated"),
    ("auto", {"flags": None}, "float32", "features unknown"),
    ("auto", {"gpus": [(9, 0)]}, "mixed_float16", "compute capability 9.0"),
    ("auto", {"gpus": [(8, 0), (6, 1)]}, "float32", "below 7.0"),
    ("on", {"gpus": [(6, 1)]}, "mixed_float16", "as asked"),
    ("auto", {"tpu": True, "gpus": []}, "mixed_bfloat16", "TPU"),
    ("off", {"flags": {"amx_bf16"}}, "float32", "--train.mixed_precision off"),
    ("float16", {"flags": {"amx_bf16"}}, "mixed_float16", "--train.mixed_precision float16"),
    ("bfloat16", {"gpus": [(9, 0)]}, "mixed_bfloat16", "--train.mixed_precision bfloat16"),
])
def test_precision_follows_the_hardware(setting, hardware, policy, reason):
    from training.distribute import choose_precision
    hardware = {"gpus": [], "tpu": False, **hardware}
    chosen = choose_precision(setting, **hardware)
    assert chosen.policy == policy and reason in chosen.reason


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    from training.distribute import cpu_flags
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu sse2 avx512_bf16\n")
    assert cpu_flags(cpuinfo) == {"fpu", "sse2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") is None


def test_a_mixed_precision_model_is_saved_as_its_float32_twin(tmp_path):
    from resnet_keras import build_model
    from resnet_keras.backend import keras
    from training.distribute import dtype_policy
    with dtype_policy("mixed_bfloat16"):
        model = build_model("resnet20", input_shape=(32, 32, 3), classes=10)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    assert model.get_layer("conv1_conv").compute_dtype == "bfloat16"
    model_files.save_model(model, tmp_path / "m.keras")
    loaded = model_files.load_model(tmp_path / "m.keras")
    assert {layer.dtype_policy.name for layer in loaded.layers} == {"float32"}
    for saved, trained in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(saved, trained)
    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    # The same function at higher precision: bfloat16 keeps about 3 significant digits.
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0),
                               atol=0.05)


# ---- the train stage ----

def test_train_stage_writes_the_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(["--stages", "train", "--run-dir", str(run_dir), *QUICK])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[train] done in" in result.stdout
    for name in ("config.json", "history.csv", "last.keras", "training_curve.png",
                 "train_result.json", "state.json"):
        assert (run_dir / name).exists(), name
    # No validation split: the best epoch would be chosen on the test split, so none is kept.
    assert not (run_dir / "best.keras").exists()
    assert os.listdir(run_dir / "logs")
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["train"]["epochs"] == 2 and saved["model"]["name"] == "resnet20"
    with open(run_dir / "history.csv") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["0", "1"]
    train_result = json.loads((run_dir / "train_result.json").read_text())
    assert 0.0 <= train_result["test_top1"] <= 1.0


def _wait_for(predicate, process, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.2)
    return False


def test_killed_run_resumes_from_last_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    args = ["--stages", "train", "--run-dir", str(run_dir), "--train.epochs", "3",
            "--train.steps_per_epoch", "12", "--train.batch_size", "16",
            "--train.save_every_steps", "5"]
    process = subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Kill -9 once a mid-epoch backup of the second epoch exists.
    def second_epoch_backup():
        history = run_dir / "history.csv"
        return (history.exists() and len(history.read_text().splitlines()) >= 2
                and (run_dir / "backup").exists())
    reached = _wait_for(second_epoch_backup, process, timeout=240)
    time.sleep(1.0)
    process.send_signal(signal.SIGKILL)
    output = process.communicate()[0]
    assert reached, output[-3000:]
    assert process.returncode == -signal.SIGKILL

    result = run_train(["--resume", str(run_dir)])
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = [line for line in result.stdout.splitlines() if "resumed from" in line]
    assert resumed, result.stdout[-3000:]
    iteration = int(resumed[0].rsplit("iteration", 1)[1])
    assert iteration >= 12, "the optimizer state of the killed run was restored"
    model = model_files.load_model(run_dir / "last.keras")
    assert int(model.optimizer.iterations.numpy()) == 3 * 12
    with open(run_dir / "history.csv") as f:
        epochs = [int(row["epoch"]) for row in csv.DictReader(f)]
    assert epochs == sorted(set(epochs)) and epochs[-1] == 2


def test_best_model_is_chosen_on_the_validation_split(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(["--stages", "train", "--run-dir", str(run_dir), *QUICK,
                        "--data.val_split", "0.1"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "best.keras").exists()
    assert "val top-1" in result.stdout and "1293 train / 144 val images" in result.stdout


def test_nan_loss_stops_with_a_message_and_keeps_good_weights(tmp_path):
    run_dir = tmp_path / "run"
    args = ["--stages", "train", "--run-dir", str(run_dir), "--train.steps_per_epoch", "4",
            "--train.batch_size", "16", "--train.save_every_steps", "1"]
    result = run_train([*args, "--train.epochs", "1"])
    assert result.returncode == 0, result.stderr[-3000:]
    good = model_files.load_model(run_dir / "last.keras").get_weights()
    # The same run continued for two more epochs at a rate that diverges at once.
    result = run_train([*args, "--train.epochs", "3", "--train.learning_rate", "1e12"])
    assert result.returncode == 2
    # At 1e12 the BatchNorm moving variances overflow before the loss does.
    assert "error: Training diverged at epoch 2, step " in result.stderr
    assert "Lower the learning rate" in result.stderr
    assert "Traceback" not in result.stderr
    kept = model_files.load_model(run_dir / "last.keras").get_weights()
    assert all(np.isfinite(w).all() for w in kept)
    for a, b in zip(good, kept):
        np.testing.assert_array_equal(a, b)


# ---- bad input ----

@pytest.mark.parametrize("args, match", [
    (["--data.dataset", "mnist"], "mnist"),
    (["--model.name", "resnet21"], "Unknown model name 'resnet21'"),
    (["--preset", "cifar11"], "Valid presets"),
    (["--train.batch_size", "5000"], "larger than the training set"),
    (["--data.dataset", "folder", "--data.data_dir", "/nonexistent/imagenet"],
     "/nonexistent/imagenet"),
])
def test_bad_input_gets_one_clear_line(tmp_path, args, match):
    result = run_train(["--stages", "train", "--run-dir", str(tmp_path / "r"), *QUICK, *args],
                       timeout=120)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert match in result.stderr
    assert "Traceback" not in result.stderr


def test_empty_data_dir_and_resume_of_another_model(tmp_path):
    (tmp_path / "data" / "train").mkdir(parents=True)
    result = run_train(["--stages", "train", "--run-dir", str(tmp_path / "r"), *QUICK,
                        "--data.dataset", "folder", "--data.data_dir", str(tmp_path / "data")],
                       timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(tmp_path / "data") in result.stderr

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(config_lib.to_dict(config_lib.resolve())))
    result = run_train(["--resume", str(run_dir), "--model.name", "resnet56"], timeout=120)
    assert result.returncode == 2
    assert "holds a run of model.name='resnet20', not 'resnet56'" in result.stderr
    result = run_train(["--resume", str(tmp_path / "nothing")], timeout=120)
    assert result.returncode == 2 and "not a run directory" in result.stderr


# ---- scale-out, without a GPU ----

def test_mirrored_strategy_over_two_logical_cpus(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(["--stages", "train", "--run-dir", str(run_dir), *QUICK,
                        "--train.cpu_replicas", "2"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 replica(s) (MirroredStrategy)" in result.stdout
    train_result = json.loads((run_dir / "train_result.json").read_text())
    assert train_result["replicas"] == 2 and train_result["global_batch"] == 32


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_mirrored_two_local_workers_end_identical(tmp_path):
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(subprocess.Popen(
            [sys.executable, "train.py", "--stages", "train", "--run-dir",
             str(tmp_path / f"worker{index}"), *QUICK],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "TF_CONFIG": json.dumps(tf_config)}))
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    for p, out in zip(processes, outputs):
        assert p.returncode == 0, out[-3000:]
        assert "2 replica(s) (MultiWorkerMirroredStrategy)" in out
    weights = [model_files.load_model(tmp_path / f"worker{i}" / "last.keras").get_weights()
               for i in range(2)]
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


# ---- the default job ----

@pytest.mark.slow
def test_default_training_reaches_97_percent_on_digits(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(["--stages", "train", "--run-dir", str(run_dir)], timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    train_result = json.loads((run_dir / "train_result.json").read_text())
    assert train_result["test_top1"] >= 0.97


def test_every_stage_has_a_function():
    assert sorted(pipeline.STAGE_FUNCTIONS) == sorted(config_lib.STAGES)
