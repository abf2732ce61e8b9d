"""Tests for rundir/cluster.py: this process's task in a multi-worker job, from TF_CONFIG."""

import json

import pytest

from rundir.cluster import Worker, num_workers, this_worker

WORKERS = ["10.0.0.1:2222", "10.0.0.2:2222", "10.0.0.3:2222"]


def tf_config(task_type="worker", index=0, cluster=None):
    cluster = {"worker": WORKERS} if cluster is None else cluster
    return {"TF_CONFIG": json.dumps({"cluster": cluster,
                                     "task": {"type": task_type, "index": index}})}


def test_the_rule_that_makes_a_job_multi_worker():
    assert this_worker("auto", {}) is None
    assert this_worker("auto", tf_config(cluster={"worker": WORKERS[:1]})) is None
    assert this_worker("none", tf_config()) is None
    assert this_worker("mirrored", tf_config()) is None
    # Asked for: one task is a job of one.
    alone = this_worker("multi_worker", tf_config(cluster={"worker": WORKERS[:1]}))
    assert alone.is_chief and alone.num_workers == 1
    assert num_workers(tf_config()) == 3 and num_workers({}) == 0


def test_the_chief_is_worker_0_or_the_chief_task():
    workers = [this_worker("auto", tf_config(index=i)) for i in range(3)]
    assert [w.is_chief for w in workers] == [True, False, False]
    assert workers[2].describe() == "worker 2 (10.0.0.3:2222)"
    assert workers[2].chief.describe() == "worker 0 (10.0.0.1:2222)"
    with_chief = {"chief": ["10.0.0.9:2222"], "worker": WORKERS[:2]}
    worker0 = this_worker("auto", tf_config(cluster=with_chief))
    chief = this_worker("auto", tf_config("chief", 0, cluster=with_chief))
    assert not worker0.is_chief and chief.is_chief and worker0.num_workers == 3
    assert worker0.chief.describe() == "chief 0 (10.0.0.9:2222)"


def test_a_job_is_its_cluster_whatever_the_key_order():
    worker = Worker({"worker": WORKERS, "chief": ["c:1"]}, "worker", 1)
    assert worker.same_job({"chief": ["c:1"], "worker": WORKERS})
    assert not worker.same_job({"chief": ["c:1"], "worker": WORKERS[:2]})


@pytest.mark.parametrize("environ, message", [
    ({"TF_CONFIG": "{cluster"}, "TF_CONFIG is not valid JSON"),
    ({"TF_CONFIG": "[1]"}, "TF_CONFIG should be a JSON object"),
    (tf_config("ps", 0), "TF_CONFIG task type 'ps' is not one train.py runs: "
                         "MultiWorkerMirroredStrategy's tasks are chief, worker."),
    (tf_config("worker", 3), "TF_CONFIG task index 3 is not in its cluster's 'worker' list "
                             "(3 tasks)."),
])
def test_a_bad_tf_config_is_named(environ, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        this_worker("auto", environ)
