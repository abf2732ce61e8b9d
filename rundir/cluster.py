"""Which task of a multi-worker job this process is, read from `TF_CONFIG` without TensorFlow.

Every worker of a `tf.distribute.MultiWorkerMirroredStrategy` job is given the
same run directory; the run directory's lock (`rundir.files.RunDir.locked`)
admits the workers of one job, and only the chief writes the run's files.

    >>> worker = this_worker("auto", {"TF_CONFIG": '{"cluster": {"worker": '
    ...     '["a:2222", "b:2222"]}, "task": {"type": "worker", "index": 1}}'})
    >>> worker.describe(), worker.is_chief, worker.chief.describe()
    ('worker 1 (b:2222)', False, 'worker 0 (a:2222)')
"""

import dataclasses
import json
import os

from rundir.json_documents import json_mapping

# The task types of a MultiWorkerMirroredStrategy job; `chief`, when present, is worker 0's role.
TASK_TYPES = ("chief", "worker")


@dataclasses.dataclass(frozen=True)
class Worker:
    """One task of a multi-worker job, as `TF_CONFIG` names it.

    Attributes:
        cluster: dict, TF_CONFIG's `cluster`: task type -> list of "host:port".
        task_type: str, `chief` or `worker`.
        index: int, the task's position in `cluster[task_type]`.
    """

    cluster: dict
    task_type: str
    index: int

    @property
    def name(self) -> str:
        """The task as messages name it: `worker 1`, `chief 0`."""
        return f"{self.task_type} {self.index}"

    @property
    def address(self) -> str:
        return self.cluster[self.task_type][self.index]

    def describe(self) -> str:
        return f"{self.name} ({self.address})"

    @property
    def num_workers(self) -> int:
        return sum(len(self.cluster.get(t, ())) for t in TASK_TYPES)

    @property
    def is_chief(self) -> bool:
        """TensorFlow's rule (multi_worker_util.is_chief): the `chief` task, else worker 0."""
        chief = self.chief
        return (self.task_type, self.index) == (chief.task_type, chief.index)

    @property
    def chief(self) -> "Worker":
        """The task of this job that writes the run's files."""
        return self.task(*(("chief", 0) if self.cluster.get("chief") else ("worker", 0)))

    def task(self, task_type, index) -> "Worker":
        """Another task of the same job."""
        return Worker(self.cluster, task_type, index)

    def same_job(self, cluster) -> bool:
        """Whether `cluster` (a TF_CONFIG `cluster` dict) is this job's."""
        return _canonical(cluster) == _canonical(self.cluster)


def _canonical(cluster) -> str:
    return json.dumps(cluster, sort_keys=True, separators=(",", ":"))


def tf_config(environ=None) -> dict:
    """The parsed `TF_CONFIG` of `environ` (default `os.environ`); {} when unset.

    Raises:
        ValueError: it is not a JSON object.
    """
    text = (os.environ if environ is None else environ).get("TF_CONFIG", "")
    if not text.strip():
        return {}
    return json_mapping(text, source="TF_CONFIG", not_json="{source} is not valid JSON: {error}.",
                        not_mapping="{source} should be a JSON object with 'cluster' and "
                                    "'task', got {value!r:.80}.")


def num_workers(environ=None) -> int:
    """How many chief and worker tasks `TF_CONFIG` names (0 without one)."""
    cluster = tf_config(environ).get("cluster") or {}
    return sum(len(cluster.get(t, ())) for t in TASK_TYPES)


def this_worker(distribute="auto", environ=None) -> Worker | None:
    """This process's task when the job trains with MultiWorkerMirroredStrategy, else None.

    The rule `training.distribute.select_strategy` follows: `auto` is
    multi-worker when TF_CONFIG names several tasks, `multi_worker` whenever it
    names this process's task.

    Args:
        distribute: str, the job's `train.distribute`.
        environ: mapping, default `os.environ`.

    Returns:
        `Worker`, or None (a single process: any other `distribute`, or no TF_CONFIG).

    Raises:
        ValueError: TF_CONFIG is malformed, or names a task this job cannot run.
    """
    if distribute not in ("auto", "multi_worker"):
        return None
    config = tf_config(environ)
    cluster = config.get("cluster") or {}
    count = sum(len(cluster.get(t, ())) for t in TASK_TYPES)
    if count == 0 or (distribute == "auto" and count < 2):
        return None
    task = config.get("task") or {}
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in TASK_TYPES:
        raise ValueError(f"TF_CONFIG task type {task_type!r} is not one train.py runs: "
                         f"MultiWorkerMirroredStrategy's tasks are {', '.join(TASK_TYPES)}.")
    if not isinstance(index, int) or not 0 <= index < len(cluster.get(task_type, ())):
        raise ValueError(f"TF_CONFIG task index {index!r} is not in its cluster's "
                         f"{task_type!r} list ({len(cluster.get(task_type, ()))} tasks).")
    return Worker(cluster, task_type, index)
