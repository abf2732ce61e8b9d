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
