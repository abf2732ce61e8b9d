"""Tests for training/distribute.py: training precision from the hardware, scale-out.

Mixed precision is trained and saved as float32 (`rundir.model_files`); the
strategies run without a GPU, over logical CPUs or two local workers of one
job sharing one run directory, launched through tests/kill_at.py (which kills
one of them, or records the weights each ends with).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from jobs import FEW_STEPS, ROOT, run_train

from rundir import model_files

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


@pytest.mark.parametrize("call, message", [
    (lambda d: d.choose_precision("fp16", gpus=[(9, 0)], tpu=False),
     "Unknown mixed-precision setting 'fp16'; valid: auto, on, off, float16, bfloat16."),
    (lambda d: d.select_strategy("mirror"),
     "Unknown distribution 'mirror'; valid: auto, none, mirrored, multi_worker, tpu."),
    (lambda d: d.resolve_switch("yes"), "Unknown on/off setting 'yes'; valid: auto, on, off."),
])
def test_an_unknown_setting_is_refused_through_the_python_api(call, message):
    # Before, `fp16` chose as `auto`, `mirror` gave the default strategy, `yes` was off.
    from training import distribute
    with pytest.raises(ValueError) as error:
        call(distribute)
    assert str(error.value) == message


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


# ---- scale-out, without a GPU ----

def test_mirrored_strategy_over_two_logical_cpus(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(["--stages", "train", "--run-dir", str(run_dir), *FEW_STEPS,
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


# ---- a multi-worker job: two local workers, one run directory ----

def start_job(args, *, logs, kill=None, weights=None):
    """Starts the two workers of one job on 127.0.0.1, both given train.py `args`.

    Each runs through tests/kill_at.py: worker 1 is killed at `kill` (a point
    of kill_at.py, e.g. "during_step@7"), and with `weights` (a folder) each
    records the weights its `fit` ends with in `weights/worker<i>.npz`.

    Returns:
        (list of `subprocess.Popen`, list of their log paths: stdout and stderr,
        the TF_CONFIG cluster).
    """
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    processes, paths = [], []
    for index in range(2):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        record = ["--weights-to", str(weights / f"worker{index}.npz")] if weights else []
        point = kill if kill and index == 1 else "none"
        path = logs / f"worker{index}-{len(list(logs.iterdir()))}.log"
        with open(path, "w") as log:
            processes.append(subprocess.Popen(
                [sys.executable, os.path.join(ROOT, "tests", "kill_at.py"), *record, point,
                 *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True,
                env={**os.environ, "TF_CONFIG": json.dumps(tf_config)}))
        paths.append(path)
    return processes, paths, cluster


def finish(processes, paths, cluster=None, *, timeout=600):
    """Waits for every worker of `start_job`'s job; returns their (exit status, log text)."""
    statuses = [p.wait(timeout=timeout) for p in processes]
    return [(status, path.read_text()) for status, path in zip(statuses, paths)]


def error_lines(log):
    return [line for line in log.splitlines() if line.startswith("error: ")]


def wait_until_locked_by_a_job(run_dir, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if "cluster" in json.loads((run_dir / "lock").read_text()):
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"no job took {run_dir / 'lock'} in {timeout} s")


def scratch_left(run_dir):
    return [os.path.join(folder, name) for folder, names, _ in os.walk(run_dir)
            for name in names if name.startswith("workertemp_")]


def test_two_workers_train_in_one_run_directory_and_a_second_job_is_refused(tmp_path):
    run_dir, logs, weights = tmp_path / "run", tmp_path / "logs", tmp_path / "weights"
    logs.mkdir()
    weights.mkdir()
    args = ["--stages", "train", "--run-dir", str(run_dir), "--train.epochs", "1",
            "--train.steps_per_epoch", "2", "--train.batch_size", "32"]
    job = start_job(args, logs=logs, weights=weights)
    wait_until_locked_by_a_job(run_dir)
    # Another job (its own cluster) given the same directory: both workers refused at once.
    for status, log in finish(*start_job(args, logs=logs), timeout=300):
        assert status == 2, log[-3000:]
        assert error_lines(log) == [
            f"error: {run_dir} is in use by a multi-worker job of 2 workers (its chief, worker "
            f"0, is process {job[0][0].pid} on {socket.gethostname()}, see {run_dir / 'lock'}); "
            f"wait for it to finish or stop it, or give another --run-dir."], log[-3000:]
    (status0, log0), (status1, log1) = finish(*job)
    assert status0 == 0 and status1 == 0, (log0[-3000:], log1[-3000:])
    assert "2 replica(s) (MultiWorkerMirroredStrategy)" in log0
    assert "worker 1 of a 2-worker job: trains with the others; the chief, worker 0" in log1
    # The chief's files are complete; the other worker left nothing, not even scratch.
    assert {"config.json", "state.json", "timing.json", "history.csv", "training_curve.png",
            "last.keras", "train_result.json", "backup", "logs"} <= set(os.listdir(run_dir))
    assert not scratch_left(run_dir)
    assert json.loads((run_dir / "train_result.json").read_text())["replicas"] == 2
    assert json.loads((run_dir / "state.json").read_text()) == {"completed": ["train"]}
    assert (run_dir / "history.csv").read_text().count("\n") == 2  # header and epoch 0
    final = [np.load(weights / f"worker{i}.npz") for i in range(2)]
    saved = model_files.load_model(run_dir / "last.keras").get_weights()
    assert len(final[0].files) == len(final[1].files) == len(saved)
    for i, weight in enumerate(saved):
        np.testing.assert_array_equal(final[0][f"arr_{i}"], final[1][f"arr_{i}"])
        np.testing.assert_array_equal(final[0][f"arr_{i}"], weight)


@pytest.mark.slow
def test_a_lost_worker_stops_the_job_and_every_worker_resumes_it(tmp_path):
    from test_reliability import best_epoch, history_epochs, history_rows, kept_epoch

    from training.distribute import LOST_WORKER_BOUND_S

    run_dir, logs = tmp_path / "run", tmp_path / "logs"
    logs.mkdir()
    args = ["--stages", "train", "--run-dir", str(run_dir), "--train.epochs", "3",
            "--train.steps_per_epoch", "4", "--train.batch_size", "16",
            "--train.save_every_steps", "2", "--data.val_split", "0.1"]
    # Worker 1 killed after step 3 of epoch 2, one step after that epoch's mid-epoch backup.
    (worker0, worker1), (log0, _), cluster = start_job(args, logs=logs, kill="during_step@7")
    assert worker1.wait(timeout=600) == -9
    lost = time.monotonic()
    status = worker0.wait(timeout=LOST_WORKER_BOUND_S + 30)
    waited = time.monotonic() - lost
    assert status == 2 and waited < LOST_WORKER_BOUND_S, (waited, log0.read_text()[-3000:])
    [line] = error_lines(log0.read_text())
    assert line.startswith(f"error: worker 1 ({cluster['worker'][1]}) of this 2-worker job was "
                           f"lost (")
    assert line.endswith(f"); worker 0 stopped too. Restart every worker with the same "
                         f"TF_CONFIG and: python train.py --resume {run_dir} (training "
                         f"continues from the last backup in {run_dir / 'backup'}).")
    assert history_epochs(run_dir) == [0]
    for status, log in finish(*start_job(["--resume", str(run_dir)], logs=logs)):
        assert status == 0, log[-3000:]
        assert "resumed from" in log and "epoch 2, step 3, optimizer iteration 6" in log
    # As a single process's resume: each epoch once, every step once, the best on validation.
    assert history_epochs(run_dir) == [0, 1, 2]
    assert kept_epoch(run_dir / "last.keras", 4) == 2
    assert kept_epoch(run_dir / "best.keras", 4) == best_epoch(history_rows(run_dir))
    assert not scratch_left(run_dir)


@pytest.mark.slow
def test_a_silent_worker_is_found_by_the_heartbeats(tmp_path):
    from training.distribute import LOST_WORKER_BOUND_S

    # SIGSTOP: a machine gone without closing its connections, as a preempted one may be.
    run_dir, logs = tmp_path / "run", tmp_path / "logs"
    logs.mkdir()
    args = ["--stages", "train", "--run-dir", str(run_dir), "--train.epochs", "2",
            "--train.steps_per_epoch", "40", "--train.batch_size", "16"]
    (worker0, worker1), (log0, log1), cluster = start_job(args, logs=logs)
    try:
        deadline = time.monotonic() + 600
        while "epoch 1/2" not in log1.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        worker1.send_signal(signal.SIGSTOP)
        silent = time.monotonic()
        status = worker0.wait(timeout=LOST_WORKER_BOUND_S + 30)
        waited = time.monotonic() - silent
    finally:
        worker1.kill()
        worker1.wait()
    assert status == 2 and waited < LOST_WORKER_BOUND_S, (waited, log0.read_text()[-3000:])
    assert error_lines(log0.read_text())[0].startswith(
        f"error: worker 1 ({cluster['worker'][1]}) of this 2-worker job was lost (it stopped "
        f"sending heartbeats to TensorFlow's coordination service); worker 0 stopped too.")


@pytest.mark.slow
def test_the_whole_job_on_two_workers_ends_on_the_chief(tmp_path):
    run_dir, logs = tmp_path / "run", tmp_path / "logs"
    logs.mkdir()
    args = ["--run-dir", str(run_dir), "--train.epochs", "1", "--train.steps_per_epoch", "2",
            "--qat.epochs", "0.05", "--export.variants", "float32,int8",
            "--report.latency_runs", "2"]
    (status0, log0), (status1, log1) = finish(*start_job(args, logs=logs))
    assert status0 == 0 and status1 == 0, (log0[-3000:], log1[-3000:])
    for stage in ("qat", "export", "report"):
        assert f"[{stage}] runs on the chief only" in log1 and f"[{stage}] done in" in log0
    assert json.loads((run_dir / "state.json").read_text()) == {
        "completed": ["train", "qat", "export", "report"]}
    assert {"qat.keras", "report.json", "export"} <= set(os.listdir(run_dir))
    assert not scratch_left(run_dir)


# ---- what a lost worker's message says ----

# The messages of the aborted collective, as TensorFlow 2.21 raised them in this project's
# runs: on the chief when worker 1 stopped (SIGSTOP), on worker 1 when the chief was killed
# and when it stopped.
HEARTBEATS = ("{{function_node __wrapped__CollectiveReduceV2_Nordering_token_1_device_/job:worker"
              "/replica:0/task:0/device:CPU:0}} Collective ops is aborted by: Error reported "
              "from /job:worker/task:1: The following tasks are unhealthy (stopped sending "
              "heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have crashed. Check the "
              "task logs for an earlier error, or scheduler events (e.g. preemption, eviction) "
              "to debug further.\nThe error could be from a previous operation. Restart your "
              "program to reset. [Op:CollectiveReduceV2] name: ")
RESET = ("{{function_node __wrapped__CollectiveReduceV2_Nordering_token_1_device_/job:worker/"
         "replica:0/task:1/device:CPU:0}} Collective ops is aborted by: recvmsg:Connection reset "
         "by peer\nAdditional GRPC error information from remote target /job:worker/replica:0/"
         "task:0 while calling /tensorflow.WorkerService/CompleteInstance:\n:UNKNOWN:Error "
         "received from peer  {grpc_status:14, grpc_message:\"recvmsg:Connection reset by "
         "peer\"}\nThe error could be from a previous operation. Restart your program to reset. "
         "[Op:CollectiveReduceV2] name: ")
UNANSWERED = ("{{function_node __wrapped__CollectiveReduceV2_Nordering_token_1_device_/job:worker"
              "/replica:0/task:1/device:CPU:0}} Collective ops is aborted by: Deadline "
              "Exceeded\n\nRPC: /tensorflow.CoordinationService/Heartbeat\nThe error could be "
              "from a previous operation. Restart your program to reset. [Op:CollectiveReduceV2] "
              "name: ")


@pytest.mark.parametrize("message, index, lost, why", [
    (HEARTBEATS, 0, "worker 1 (10.0.0.2:2222)",
     "it stopped sending heartbeats to TensorFlow's coordination service"),
    (RESET, 1, "worker 0 (10.0.0.1:2222)",
     "the connection to it broke: recvmsg:Connection reset by peer"),
    (UNANSWERED, 1, "worker 0 (10.0.0.1:2222)", "its coordination service stopped answering "
     "heartbeats: Deadline Exceeded RPC: /tensorflow.CoordinationService/Heartbeat"),
    ("Collective ops is aborted by: something new\nThe error could be from a previous op", 1,
     "a worker", "something new"),
], ids=["chief_sees_missed_heartbeats", "worker_sees_a_reset", "worker_sees_no_answer",
        "unknown"])
def test_a_lost_worker_is_named_with_the_way_to_resume(message, index, lost, why):
    from rundir.cluster import Worker
    from training.distribute import describe_lost_worker

    me = Worker({"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}, "worker", index)
    assert describe_lost_worker(message, me=me, resume="runs/r") == (
        f"{lost} of this 2-worker job was lost ({why}); worker {index} stopped too. Restart "
        f"every worker with the same TF_CONFIG and: python train.py --resume runs/r (training "
        f"continues from the last backup in runs/r/backup).")
