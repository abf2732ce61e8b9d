"""The run directory of `python train.py`: every file a stage writes or reads, named once.

Each stage asks a `RunDir` for its paths instead of spelling file names, so
training, QAT, export, the report, the experiments and the README tool agree:

    >>> run = RunDir("runs/resnet20-digits-20261129-120000")
    >>> run.last_model
    'runs/resnet20-digits-20261129-120000/last.keras'
"""

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import socket
import time

from rundir.cluster import TASK_TYPES
from rundir.json_documents import json_mapping

logger = logging.getLogger(__name__)

# How long a worker that is not the chief waits for its chief to take the run directory's lock.
CHIEF_WAIT_S = 600
_POLL_S = 0.5
# A worker probing the lock holds it shared for an instant; a process taking it
# retries for this long before it believes another one holds it.
_PROBE_RETRY_S = 1.0


@contextlib.contextmanager
def replacing(path):
    """Yields a temporary path next to `path` to write; on success it replaces `path`.

    The one way this project writes a file whole or not at all: a kill or a
    full disk midway leaves the previous `path` as it was. The temporary name
    keeps `path`'s suffix (`.partial-last.keras`), which `model.save` needs.

    Raises:
        OSError: the write failed (e.g. no space left); the message names
            `path` and says the previous file is unchanged. Any other error
            of the writer propagates as it is; the temporary file is removed
            either way.
    """
    path = os.fspath(path)
    partial = os.path.join(os.path.dirname(path), ".partial-" + os.path.basename(path))
    try:
        yield partial
        os.replace(partial, path)
    except BaseException as e:
        if os.path.exists(partial):
            os.remove(partial)
        if isinstance(e, OSError):
            raise OSError(e.errno, f"Could not write {path}: {e.strerror or e}; the previous "
                                   f"{os.path.basename(path)} is unchanged") from None
        raise


def write_json(path, data, *, indent=2, **dump_options):
    """Writes `data` as indented JSON to `path`, whole or not at all (`replacing`).

    Args:
        path: str or path-like; its folder is created if missing.
        data: a JSON-able object.
        indent: int, spaces per level.
        **dump_options: passed to `json.dump`, e.g. `allow_nan=False`, `default=`.

    Raises:
        OSError: as `replacing`.
        ValueError, TypeError: as `json.dump`; `path` is then unchanged.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with replacing(path) as partial, open(partial, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=indent, **dump_options)
        f.write("\n")


def _flock_exclusive(f) -> bool:
    """Takes `f`'s flock exclusively; False when another process holds it."""
    deadline = time.monotonic() + _PROBE_RETRY_S
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)


def _flock_probe(f) -> bool:
    """Whether `f`'s flock is free, without keeping it."""
    try:
        fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    fcntl.flock(f, fcntl.LOCK_UN)
    return True


def _read_holder(f) -> dict:
    """The lock file's record of its holder; {} while it is being written."""
    f.seek(0)
    text = f.read().strip()
    if text.isdigit():  # written by a train.py from before the record was JSON
        return {"pid": int(text)}
    try:
        return json_mapping(text, source=f.name)
    except ValueError:
        return {}


def _file(*parts):
    """A read-only attribute: the path of `parts` inside the run directory."""
    return property(lambda self: os.path.join(self.root, *parts))


@dataclasses.dataclass(frozen=True)
class RunDir:
    """The files of one run directory.

    Attributes:
        root: str, the folder (created by the pipeline, not by this type).
    """

    root: str

    def __post_init__(self):
        object.__setattr__(self, "root", os.fspath(self.root))

    # The pipeline's own bookkeeping.
    lock = _file("lock")  # who holds the run directory: pid, host, the job's cluster
    config = _file("config.json")
    state = _file("state.json")
    timing = _file("timing.json")
    # The train stage.
    history = _file("history.csv")
    training_curve = _file("training_curve.png")
    last_model = _file("last.keras")
    # Written only when the dataset has a validation split to choose it on.
    best_model = _file("best.keras")
    backup = _file("backup")
    logs = _file("logs")
    train_result = _file("train_result.json")
    # Fine-tuning's head phase (train.head_epochs): once it exists, the phase is done.
    head_model = _file("head.keras")
    # The qat stage.
    qat_model = _file("qat.keras")
    qat_result = _file("qat_result.json")
    # The export stage.
    export_dir = _file("export")
    manifest = _file("export", "manifest.json")
    # The report stage.
    report_json = _file("report.json")
    report_markdown = _file("report.md")
    report_chart = _file("report.png")
    # The bundle stage: one folder per deployment target, from report.json's decision.
    bundles_dir = _file("bundles")

    def bundle(self, target):
        """The bundle folder of one deployment target (report/targets.py)."""
        return os.path.join(self.bundles_dir, target)

    def exported_file(self, name):
        """A file inside `export_dir`, e.g. a name from the manifest."""
        return os.path.join(self.export_dir, name)

    def relative(self, path):
        """`path` relative to the run directory, as messages and manifests show it."""
        return os.path.relpath(path, self.root)

    def require(self, path, *, what, stage, hint=""):
        """Returns `path`, or raises the error that says which stage makes it.

        Args:
            path: one of this run's paths.
            what: str, what the file holds, e.g. "trained model".
            stage: str, the stage that writes it.
            hint: str, an extra sentence for the message.

        Raises:
            FileNotFoundError: `path` does not exist.
        """
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{self.root} has no {what} ({self.relative(path)}). Run the {stage} stage "
                f"first: python train.py --stages {stage} --run-dir {self.root}{hint}")
        return path

    def create(self):
        """Creates the folder if missing.

        Raises:
            OSError: it is a file, lies under a file, or cannot be created
                (read-only, no permission, disk full); the message names it.
        """
        if os.path.exists(self.root) and not os.path.isdir(self.root):
            raise NotADirectoryError(f"The run directory {self.root} is a file, not a folder; "
                                     f"give another --run-dir.")
        try:
            os.makedirs(self.root, exist_ok=True)
        except OSError as e:
            raise OSError(e.errno, f"Cannot create the run directory {self.root}: "
                                   f"{e.strerror} (give another --run-dir)") from None

    @contextlib.contextmanager
    def locked(self, *, worker=None, chief_wait_s=CHIEF_WAIT_S):
        """Holds the run directory for one process, or for the workers of one job.

        The lock is an advisory `flock` on `lock`, held by a single process or
        by the chief of a multi-worker job; the file says who holds it (pid,
        host, and the job's cluster). The kernel drops the lock when its
        process dies, so a lock file left by a crash is taken over, never
        trusted. The job's other workers hold nothing: they are admitted once
        their chief holds the lock for the same cluster, and they write none
        of the run's files.

        Args:
            worker: `rundir.cluster.Worker` of a multi-worker job, or None for
                a single process.
            chief_wait_s: float, how long a worker that is not the chief waits
                for its chief to take the lock.

        Raises:
            OSError: another process or job holds the run directory (the
                message names it), the chief did not take it in time, or the
                lock file cannot be written.
        """
        self.create()
        if worker is not None and not worker.is_chief:
            self._wait_for_chief(worker, chief_wait_s)
            yield self
            return
        with self._open_lock() as f:
            if not _flock_exclusive(f):
                raise OSError(self._in_use(_read_holder(f)))
            f.seek(0)
            f.truncate()
            record = {"pid": os.getpid(), "host": socket.gethostname()}
            if worker is not None:
                record.update(task=worker.name, cluster=worker.cluster)
            f.write(json.dumps(record) + "\n")
            f.flush()
            try:
                yield self
            finally:
                f.seek(0)
                f.truncate()

    def _open_lock(self):
        try:
            return open(self.lock, "a+")
        except OSError as e:
            raise OSError(e.errno, f"Cannot write {self.lock}: {e.strerror}") from None

    def _wait_for_chief(self, worker, timeout):
        """Returns once `worker`'s chief holds the lock; refuses another holder at once."""
        deadline = time.monotonic() + timeout
        waiting = False
        while True:
            with self._open_lock() as f:
                held = not _flock_probe(f)
                holder = _read_holder(f) if held else None
            # An empty record: the holder took the lock and is writing it.
            if holder:
                if "cluster" in holder and worker.same_job(holder["cluster"]):
                    return
                raise OSError(self._in_use(holder))
            if time.monotonic() > deadline:
                chief = worker.chief.describe()
                raise OSError(f"{worker.name} waited {timeout:.0f} s for its chief, {chief}, to "
                              f"take {self.lock}; start the chief with the same TF_CONFIG "
                              f"cluster and --run-dir, or see its log for why it stopped.")
            if not waiting:
                logger.info("%s: waiting for the chief, %s, to take %s", worker.name,
                            worker.chief.describe(), self.lock)
                waiting = True
            time.sleep(_POLL_S)

    def _in_use(self, holder):
        """The refusal naming who holds the run directory (`holder`: the lock file's record)."""
        pid, host = holder.get("pid", "unknown"), holder.get("host", "unknown host")
        if "cluster" in holder:
            workers = sum(len(holder["cluster"].get(t, ())) for t in TASK_TYPES)
            who = (f"a multi-worker job of {workers} workers (its chief, "
                   f"{holder.get('task', 'worker 0')}, is process {pid} on {host}, see "
                   f"{self.lock})")
        else:
            who = f"another train.py (process {pid} on {host}, see {self.lock})"
        return (f"{self.root} is in use by {who}; wait for it to finish or stop it, or give "
                f"another --run-dir.")

    def read_json(self, path):
        """The JSON object at `path` (one of this run's paths).

        Raises:
            ValueError: the file is truncated or corrupt; the message names it.
        """
        with open(path, "rb") as f:
            return json_mapping(f.read(), source=path)

    def write_json(self, path, data):
        """Writes `data` as indented JSON to `path` (one of this run's paths), as `write_json`."""
        write_json(path, data)
