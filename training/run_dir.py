"""The run directory of `python train.py`: every file a stage writes or reads, named once.

Each stage asks a `RunDir` for its paths instead of spelling file names, so
training, QAT, export, the report, the experiments and the README tool agree:

    >>> run = RunDir("runs/resnet20-digits-20261129-120000")
    >>> run.last_model
    'runs/resnet20-digits-20261129-120000/last.keras'
"""

import dataclasses
import json
import os


@dataclasses.dataclass(frozen=True)
class RunDir:
    """The files of one run directory.

    Attributes:
        root: str, the folder (created by the pipeline, not by this type).
    """

    root: str

    def __post_init__(self):
        object.__setattr__(self, "root", os.fspath(self.root))

    def _path(self, *parts):
        return os.path.join(self.root, *parts)

    # The pipeline's own bookkeeping.
    config = property(lambda self: self._path("config.json"))
    state = property(lambda self: self._path("state.json"))
    timing = property(lambda self: self._path("timing.json"))
    # The train stage.
    history = property(lambda self: self._path("history.csv"))
    training_curve = property(lambda self: self._path("training_curve.png"))
    last_model = property(lambda self: self._path("last.keras"))
    # Written only when the dataset has a validation split to choose it on.
    best_model = property(lambda self: self._path("best.keras"))
    backup = property(lambda self: self._path("backup"))
    logs = property(lambda self: self._path("logs"))
    train_result = property(lambda self: self._path("train_result.json"))
    # The qat stage.
    qat_model = property(lambda self: self._path("qat.keras"))
    qat_result = property(lambda self: self._path("qat_result.json"))
    # The export stage.
    export_dir = property(lambda self: self._path("export"))
    manifest = property(lambda self: self._path("export", "manifest.json"))
    # The report stage.
    report_json = property(lambda self: self._path("report.json"))
    report_markdown = property(lambda self: self._path("report.md"))
    report_chart = property(lambda self: self._path("report.png"))
    android_dir = property(lambda self: self._path("android"))

    def android_bundle(self, variant):
        """The Android bundle folder of one exported variant."""
        return self._path("android", variant)

    def exported_file(self, name):
        """A file inside `export_dir`, e.g. a name from the manifest."""
        return self._path("export", name)

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

    def read_json(self, path):
        """The JSON document at `path` (one of this run's paths)."""
        with open(path) as f:
            return json.load(f)

    def write_json(self, path, data):
        """Writes `data` as indented JSON to `path`, whole or not at all."""
        os.makedirs(os.path.dirname(path), exist_ok=True)
        partial = path + ".partial"
        with open(partial, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(partial, path)
