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
import os


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


def write_json(path, data, **dump_options):
    """Writes `data` as indented JSON to `path`, whole or not at all (`replacing`).

    Args:
        path: str or path-like; its folder is created if missing.
        data: a JSON-able object.
        **dump_options: passed to `json.dump`, e.g. `allow_nan=False`, `default=`.

    Raises:
        OSError: as `replacing`.
        ValueError, TypeError: as `json.dump`; `path` is then unchanged.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with replacing(path) as partial, open(partial, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, **dump_options)
        f.write("\n")


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
    lock = _file("lock")  # the pid of the process using the run directory
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
    android_dir = _file("android")

    def android_bundle(self, variant):
        """The Android bundle folder of one exported variant."""
        return os.path.join(self.android_dir, variant)

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
    def locked(self):
        """Holds the run directory for one process; a second one is refused at once.

        The lock is an advisory `flock` on `lock`, which holds the owner's pid
        for the message. The kernel drops the lock when its process dies, so a
        lock file left by a crash is taken over, never trusted.

        Raises:
            OSError: another live process holds the run directory (the message
                names its pid), or the lock file cannot be written.
        """
        self.create()
        try:
            f = open(self.lock, "a+")
        except OSError as e:
            raise OSError(e.errno, f"Cannot write {self.lock}: {e.strerror}") from None
        with f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                owner = f.read().strip() or "unknown"
                raise OSError(f"{self.root} is in use by another train.py (process {owner}, see "
                              f"{self.lock}); wait for it to finish or stop it, or give another "
                              f"--run-dir.") from None
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            try:
                yield self
            finally:
                f.seek(0)
                f.truncate()

    def read_json(self, path):
        """The JSON object at `path` (one of this run's paths).

        Raises:
            ValueError: the file is truncated or corrupt; the message names it.
        """
        try:
            with open(path) as f:
                data = json.load(f)
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            raise ValueError(f"{path} is truncated or corrupt (not valid JSON: {e}).") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path} is corrupt: it holds a {type(data).__name__}, not a JSON "
                             f"object.")
        return data

    def write_json(self, path, data):
        """Writes `data` as indented JSON to `path` (one of this run's paths), as `write_json`."""
        write_json(path, data)
