"""Tests for rundir/files.py: the run directory's file names, the atomic writer, the lock."""

import json
import os
import socket
import threading
import time

import pytest

from rundir import RunDir, replacing
from rundir.cluster import Worker
from rundir.files import write_json
from rundir.json_documents import json_mapping, require_mapping


def test_run_dir_names_every_file_once(tmp_path):
    run = RunDir(tmp_path / "r")
    paths = [run.lock, run.config, run.state, run.timing, run.history, run.training_curve,
             run.last_model, run.best_model, run.backup, run.logs, run.train_result,
             run.head_model, run.qat_model, run.qat_result, run.export_dir, run.manifest,
             run.report_json,
             run.report_markdown, run.report_chart, run.bundles_dir]
    assert len(set(paths)) == len(paths)
    assert all(p.startswith(str(tmp_path / "r")) for p in paths)
    with pytest.raises(FileNotFoundError, match=r"has no QAT model \(qat.keras\). Run the qat "
                                                r"stage first: python train.py --stages qat"):
        run.require(run.qat_model, what="QAT model", stage="qat")
    run.write_json(run.manifest, {"int8": "m_int8.tflite"})
    assert run.read_json(run.manifest) == {"int8": "m_int8.tflite"}
    assert os.listdir(run.export_dir) == ["manifest.json"]  # no temporary file left


@pytest.mark.parametrize("content, message", [
    (b'{"int8": "m_in', "is truncated or corrupt (not valid JSON: Unterminated string"),
    (b'\x80{"int8": 1}', "is truncated or corrupt (not valid JSON: 'utf-8' codec"),
    (b"[1, 2]", "is corrupt: it holds a list, not a JSON object."),
])
def test_a_run_file_that_is_no_json_object_is_named(tmp_path, content, message):
    run = RunDir(str(tmp_path / "{r}"))  # braces in the path are named as they are
    os.makedirs(run.export_dir)
    with open(run.manifest, "wb") as f:
        f.write(content)
    with pytest.raises(ValueError) as error:
        run.read_json(run.manifest)
    assert str(error.value).startswith(f"{run.manifest} {message}")


def test_json_mapping_words_each_callers_errors():
    with pytest.raises(ValueError, match=r"^X holds 'abc', not a mapping \(str\)$"):
        json_mapping('"abc"', source="X", not_mapping="{source} holds {value!r}, not a mapping "
                                                      "({kind})")
    with pytest.raises(ValueError, match=r"^X: Expecting value"):
        json_mapping("", source="X", not_json="{source}: {error}")
    assert require_mapping({"a": 1}, source="X") == {"a": 1}


def test_replacing_writes_whole_or_not_at_all(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text("old")
    with replacing(path) as partial:
        assert partial == str(tmp_path / ".partial-manifest.json")
        with open(partial, "w") as f:
            f.write("new")
        assert path.read_text() == "old"
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["manifest.json"]
    with pytest.raises(OSError, match=f"Could not write {path}: .*; the previous "
                                      f"manifest.json is unchanged"):
        with replacing(path) as partial:
            with open(partial, "w") as f:
                f.write("half")
            raise OSError(28, "No space left on device")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["manifest.json"]


def test_replacing_removes_its_temporary_file_whatever_the_writer_raises(tmp_path):
    path = tmp_path / "result.json"
    write_json(path, {"kept": 1})
    with pytest.raises(TypeError):
        write_json(path, {"not json": object()})
    with pytest.raises(ValueError, match="not a model"):
        with replacing(path) as partial:
            open(partial, "w").write("half")
            raise ValueError("not a model")
    assert os.listdir(tmp_path) == ["result.json"]
    assert json.loads(path.read_text()) == {"kept": 1}


# ---- the lock: one process, or the workers of one job ----

JOB = {"worker": ["127.0.0.1:1001", "127.0.0.1:1002"]}
OTHER_JOB = {"worker": ["127.0.0.1:2001", "127.0.0.1:2002"]}


def test_the_lock_admits_the_workers_of_one_job_only(tmp_path):
    run = RunDir(tmp_path / "run")
    chief, worker1 = Worker(JOB, "worker", 0), Worker(JOB, "worker", 1)
    with run.locked(worker=chief):
        record = json.loads(open(run.lock).read())
        assert record == {"pid": os.getpid(), "host": socket.gethostname(),
                          "task": "worker 0", "cluster": JOB}
        with run.locked(worker=worker1, chief_wait_s=0):
            pass  # its chief holds the lock for the same cluster: admitted, holding nothing
        refusal = (f"{run.root} is in use by a multi-worker job of 2 workers (its chief, worker "
                   f"0, is process {os.getpid()} on {socket.gethostname()}, see {run.lock}); wait "
                   f"for it to finish or stop it, or give another --run-dir.")
        for intruder in (Worker(OTHER_JOB, "worker", 0), Worker(OTHER_JOB, "worker", 1), None):
            with pytest.raises(OSError) as refused:
                with run.locked(worker=intruder, chief_wait_s=0):
                    pass
            assert str(refused.value) == refusal
    with run.locked():  # the job is over: a single process takes the directory
        with pytest.raises(OSError, match=r"in use by another train.py \(process "
                                          f"{os.getpid()} on "):
            with run.locked(worker=worker1, chief_wait_s=0):
                pass


def test_a_worker_waits_for_its_chief_and_gives_up_with_a_message(tmp_path):
    run = RunDir(tmp_path / "run")
    worker1 = Worker(JOB, "worker", 1)
    with pytest.raises(OSError, match=f"worker 1 waited 1 s for its chief, worker 0 "
                                      f"\\(127.0.0.1:1001\\), to take {run.lock}; start the "
                                      f"chief with the same TF_CONFIG cluster and --run-dir"):
        with run.locked(worker=worker1, chief_wait_s=1):
            pass
    admitted = threading.Event()

    def worker():
        with run.locked(worker=worker1, chief_wait_s=30):
            admitted.set()

    waiting = threading.Thread(target=worker)
    waiting.start()
    time.sleep(1)
    assert not admitted.is_set()
    with run.locked(worker=Worker(JOB, "worker", 0)):
        waiting.join(timeout=30)
        assert admitted.is_set()
