"""The job's configuration: nested dataclasses, overrides, and the checks of every value.

Precedence: dataclass defaults < preset (`job.presets`) < config file (JSON or
YAML) < command-line overrides (`--train.epochs 5`). The resolved
configuration is written as `config.json` into every run directory.
"""

import dataclasses
import math
import os
import types
import typing
from typing import Literal

# Each stage owns its closed sets and defaults, in modules that load no TensorFlow
# (training.options, export.variants, report.targets, report.decide); the configuration
# takes them from there, and `_coerce` refuses any other value, listing the valid ones.
from export import variants as export_variants
from job.presets import PRESETS
from report import decide as report_decide
from report import targets as report_targets
from rundir.json_documents import json_mapping, require_mapping
from training import options as training_options
from training.options import Distribute, PrecisionSetting, Schedule, Switch, WarmupShape

# The job's own closed set: the stages it runs, in order.
Stage = Literal["train", "qat", "export", "report", "bundle"]
Target = Literal[report_targets.NAMES]

STAGES: tuple[str, ...] = typing.get_args(Stage)


@dataclasses.dataclass
class DataConfig:
    dataset: str = "digits"  # one of datasets.DATASETS or tfds:NAME[:CONFIG], checked by `validate`
    data_dir: str | None = None  # archive or folder (tfds: its data dir); None: the Keras cache
    image_size: int | None = None  # folder datasets only; default 224
    # Held out of the training set for validation: a fraction (0.1) or a count (5000).
    val_split: int | float = 0
    augment: bool = True
    # One of datasets.AUGMENTATIONS: auto keeps each source's own (the paper's
    # for CIFAR; a folder gets the Inception crop from 128 pixels, pad-crop-flip below).
    augmentation: str = "auto"


@dataclasses.dataclass
class ModelConfig:
    name: str = "resnet20"
    variant: str | None = None  # v1 | v1.5 for ImageNet nets
    shortcut: str | None = None  # A | B for CIFAR nets
    bn_momentum: float = 0.9  # PyTorch's 0.1; Keras's 0.99 lags on short runs
    zero_init_last_bn: bool = False
    # imagenet (Keras cache), an .h5 of this package's layout, or a torchvision
    # .pth/.pt/.safetensors; the variant follows the weights (training/pretrained.py).
    weights: str | None = None


@dataclasses.dataclass
class TrainConfig:
    epochs: float = 20
    batch_size: int = 64  # per replica; the global batch is this x replicas
    learning_rate: float = 0.1  # for a global batch of `reference_batch_size`
    reference_batch_size: int = 64  # lr scales linearly with global batch / this
    momentum: float = 0.9
    weight_decay: float = 5e-4  # L2 on kernels only, as in the paper
    schedule: Schedule = "cosine"
    lr_decay_epochs: tuple[float, ...] = ()  # step schedule: divide lr by 10 at these
    warmup_epochs: float = 0.0
    warmup_steps: int = 0  # the warmup in optimizer steps, instead of warmup_epochs
    warmup_shape: WarmupShape = "linear"
    label_smoothing: float = 0.0
    # Fine-tuning: first train only the top this long, backbone frozen (needs model.weights).
    head_epochs: float = 0
    head_learning_rate: float | None = None  # for `reference_batch_size`; None: learning_rate
    steps_per_epoch: int | None = None  # None: one pass over the training set
    save_every_steps: int = 50  # backup frequency for resuming a killed run
    # auto: 16-bit where the hardware computes it natively (training/options.py)
    mixed_precision: PrecisionSetting = "auto"
    xla: Switch = "auto"  # auto: on with a GPU (on CPU it is slower)
    distribute: Distribute = "auto"
    cpu_replicas: int = 1  # >1: split the CPU into logical devices and mirror over them
    seed: int = 0
    verbose: int = 2  # Keras fit verbosity: 1 progress bar, 2 one line per epoch


@dataclasses.dataclass
class QATConfig:
    epochs: float = 3
    learning_rate: float = 0.005
    batch_size: int = 64


@dataclasses.dataclass
class ExportConfig:
    variants: tuple[export_variants.Variant, ...] = export_variants.VARIANTS
    calibration_size: int = export_variants.CALIBRATION_SIZE
    io_dtype: export_variants.IODtype = "uint8"  # uint8 is the Edge TPU convention


@dataclasses.dataclass
class ReportConfig:
    # Top-1 points an int8 file may lose against Keras float, checked at the
    # worst end of the paired interval (report/decide.py).
    budget_points: float = report_decide.BUDGET_POINTS
    # Recall points any one class may lose, checked on the measured change.
    class_budget_points: float = report_decide.CLASS_BUDGET_POINTS
    confidence: float = report_decide.CONFIDENCE  # level of every paired interval, in [0.5, 1)
    # The deployment targets to decide for (report/targets.py), each proven on its runtime.
    targets: tuple[Target, ...] = report_targets.NAMES
    # Test images each file runs on through MediaPipe Tasks, on the CPU and the GPU
    # delegate (export/gpu.py), where MediaPipe's environment is built; 0 skips it.
    mediapipe_images: int = 50
    selective_threshold: float = 1.0  # int8 drop (points) above which float fallback is tried
    latency_runs: int = 50  # timed runs of each file, 1 thread and all


@dataclasses.dataclass
class Config:
    preset: str = "digits"
    stages: tuple[Stage, ...] = STAGES
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    qat: QATConfig = dataclasses.field(default_factory=QATConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)
    report: ReportConfig = dataclasses.field(default_factory=ReportConfig)


def _field_type(cls, name):
    return typing.get_type_hints(cls)[name]


def _coerce(value, hint, key):
    """Converts a string or JSON value to the field's type; closed sets are checked here."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if value is None:
        return None
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        return tuple(_coerce(v, args[0], key) for v in value)
    if origin is Literal:
        return _one_of(value, args, key)
    if origin in (typing.Union, types.UnionType):
        if isinstance(value, str) and value.lower() in ("none", "null", ""):
            return None
        inner = [a for a in args if a is not type(None)]
        if inner == [int, float]:
            return _number(value, key)
        return _coerce(value, inner[0], key)
    try:
        if hint is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        value = hint(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key}={value!r} is not a valid {hint.__name__}.") from None
    if hint is float and not math.isfinite(value):
        raise ValueError(f"{key}={value!r} is not a finite number.")
    return value


def _one_of(value, valid, key):
    """`value` if it is one of the closed set `valid`, else the ValueError that lists them."""
    if value not in valid:
        raise ValueError(f"{key}={value!r} is not valid. Valid values: "
                         f"{', '.join(map(str, valid))}.")
    return value


def _number(value, key):
    """An `int | float` field: "5000" stays the int count 5000, "0.1" the float fraction."""
    if isinstance(value, bool):
        raise ValueError(f"{key}={value!r} is not a number.")
    if not isinstance(value, int | float):
        try:
            value = int(value)
        except (TypeError, ValueError):
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{key}={value!r} is not a number.") from None
    if not math.isfinite(value):
        raise ValueError(f"{key}={value!r} is not a finite number.")
    return value


def apply_overrides(config: Config, overrides: dict) -> Config:
    """Returns a copy of `config` with nested overrides applied.

    Args:
        config: the configuration to start from.
        overrides: nested dict (`{"train": {"epochs": 5}}`) or dotted keys
            (`{"train.epochs": "5"}`); string values are parsed to the field type.

    Raises:
        ValueError: an unknown key (the message lists valid keys) or a value of
            the wrong type.
    """
    config = dataclasses.replace(config, **{
        f.name: dataclasses.replace(getattr(config, f.name))
        for f in dataclasses.fields(config) if dataclasses.is_dataclass(getattr(config, f.name))})
    flat = {}
    for key, value in overrides.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    for key, value in flat.items():
        target, attr = config, key
        if "." in key:
            section, attr = key.split(".", 1)
            if section not in field_names(Config) or not dataclasses.is_dataclass(
                    getattr(config, section)):
                raise ValueError(f"Unknown configuration key {key!r}. Valid keys: "
                                 f"{', '.join(all_keys())}.")
            target = getattr(config, section)
        if attr not in field_names(type(target)) or dataclasses.is_dataclass(
                getattr(target, attr)):
            raise ValueError(f"Unknown configuration key {key!r}. Valid keys: "
                             f"{', '.join(all_keys())}.")
        setattr(target, attr, _coerce(value, _field_type(type(target), attr), key))
    return config


def field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def all_keys() -> list[str]:
    """Every configurable key, dotted (`train.epochs`), with `preset` and `stages`."""
    keys = []
    defaults = Config()
    for f in dataclasses.fields(Config):
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(value):
            keys += [f"{f.name}.{g.name}" for g in dataclasses.fields(value)]
        else:
            keys.append(f.name)
    return keys


# The errors of a configuration file that is not JSON, or not a mapping of sections.
_NOT_JSON = "Configuration file {source} is not valid JSON: {error}."
_NOT_MAPPING = ("Configuration file {source} must hold a mapping of sections (data, model, "
                "train, ...) to their keys, got a {kind}.")


def load_file(path) -> dict:
    """Reads a JSON or YAML configuration file into a nested dict.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: it is not valid JSON or YAML, or holds no mapping; the
            message names the file and, for YAML, where.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"Configuration file {path} does not exist.")
    with open(path) as f:
        text = f.read()
    if not path.endswith((".yaml", ".yml")):
        return json_mapping(text, source=path, not_json=_NOT_JSON, not_mapping=_NOT_MAPPING)
    import yaml
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValueError(f"Configuration file {path} is not valid YAML{where}: "
                         f"{getattr(e, 'problem', None) or e}.") from None
    return require_mapping(data, source=path, not_mapping=_NOT_MAPPING)


def resolve(preset="digits", *, file=None, overrides=None) -> Config:
    """Builds the configuration: defaults < preset < file < overrides.

    Raises:
        ValueError: unknown preset (lists the valid ones), key or value.
    """
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}. Valid presets: {', '.join(PRESETS)}.")
    config = apply_overrides(Config(preset=preset), PRESETS[preset])
    if file:
        config = apply_overrides(config, load_file(file))
    config = apply_overrides(config, overrides or {})
    validate(config)
    return config


@dataclasses.dataclass(frozen=True)
class Range:
    """The valid values of one numeric key: `low` <= value <= `high`, either end open or absent.

    Attributes:
        low, high: float or None (no bound on that side).
        low_open, high_open: bool, the bound itself is not valid.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def holds(self, value) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        low = None if self.low is None else f"{'>' if self.low_open else '>='} {self.low:g}"
        high = None if self.high is None else f"{'<' if self.high_open else '<='} {self.high:g}"
        return " and ".join(part for part in (low, high) if part)


_POSITIVE = Range(0, low_open=True)
_COUNT = Range(1)
_NON_NEGATIVE = Range(0)
_FRACTION = Range(0, 1, high_open=True)  # momentum-like: 1 would never forget

# Every numeric key's valid values, checked by `validate` before anything runs;
# `train.py --help` shows them. A None value (where the type allows it) means
# "the default" and is not checked here.
RANGES: dict[str, Range] = {
    # Folder images are decoded at this size: a CIFAR net needs 8, beyond 1024 a
    # few thousand images no longer fit in memory.
    "data.image_size": Range(8, 1024),
    "model.bn_momentum": _FRACTION,
    "train.epochs": _POSITIVE,
    "train.batch_size": _COUNT,
    "train.learning_rate": _POSITIVE,
    "train.reference_batch_size": _COUNT,
    "train.momentum": _FRACTION,
    "train.weight_decay": _NON_NEGATIVE,
    "train.warmup_epochs": _NON_NEGATIVE,
    "train.warmup_steps": _NON_NEGATIVE,
    # 1 would make every target uniform; above it the true class's target is negative.
    "train.label_smoothing": _FRACTION,
    "train.head_epochs": _NON_NEGATIVE,
    "train.head_learning_rate": _POSITIVE,
    "train.steps_per_epoch": _COUNT,  # Keras reads -1 as "run forever"
    "train.save_every_steps": _COUNT,
    "train.cpu_replicas": _COUNT,
    "train.seed": _NON_NEGATIVE,  # numpy's generators refuse a negative seed
    "train.verbose": Range(0, 2),
    "qat.epochs": _POSITIVE,
    "qat.learning_rate": _POSITIVE,
    "qat.batch_size": _COUNT,
    "export.calibration_size": _COUNT,
    "report.budget_points": _NON_NEGATIVE,
    "report.class_budget_points": _NON_NEGATIVE,
    # The report's, which says why (report/decide.py).
    "report.confidence": Range(*report_decide.CONFIDENCE_RANGE, high_open=True),
    "report.mediapipe_images": _NON_NEGATIVE,
    "report.selective_threshold": _NON_NEGATIVE,
    "report.latency_runs": _COUNT,
}


def _value(config, key):
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


def validate(config: Config) -> None:
    """Checks what `_coerce` cannot: every key's range (`RANGES`), names against their registries.

    Raises:
        ValueError: the first invalid value; the message names the key and
            what is valid.
    """
    from datasets import AUGMENTATIONS, check_dataset_name

    check_dataset_name(config.data.dataset, key="data.dataset")  # a name or tfds:NAME
    # Not a Literal: importing datasets loads TensorFlow, so it is checked here, not parsed.
    _one_of(config.data.augmentation, AUGMENTATIONS, "data.augmentation")
    for key, valid in RANGES.items():
        value = _value(config, key)
        if value is not None and not valid.holds(value):
            raise ValueError(f"{key} must be {valid.describe()}, got {value}.")
    _check_val_split(config.data.val_split)
    t = config.train
    training_options.check_schedule(t.schedule, lr_decay_epochs=t.lr_decay_epochs,
                                    warmup_epochs=t.warmup_epochs,
                                    warmup_steps=t.warmup_steps, warmup_shape=t.warmup_shape)
    if config.train.head_epochs and not config.model.weights:
        raise ValueError(f"train.head_epochs={config.train.head_epochs} trains a new top on "
                         f"pretrained features, but model.weights is not set; give "
                         f"--model.weights or leave train.head_epochs at 0.")
    if not config.stages:
        raise ValueError(f"stages is empty; give some of {', '.join(STAGES)}.")
    if not config.export.variants:
        raise ValueError(f"export.variants is empty; give some of "
                         f"{', '.join(export_variants.VARIANTS)}.")
    if not config.report.targets:
        raise ValueError(f"report.targets is empty; give some of "
                         f"{', '.join(report_targets.NAMES)}.")


def _check_val_split(val_split):
    """A count (an int >= 0) or a fraction of the training split (a float in [0, 1))."""
    if isinstance(val_split, float) and not 0 <= val_split < 1:
        raise ValueError(f"data.val_split={val_split} is neither a fraction in [0, 1) nor a "
                         f"count of images (an integer >= 0).")
    if isinstance(val_split, int) and val_split < 0:
        raise ValueError(f"data.val_split must be >= 0 (a count of images), got {val_split}.")


def to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)


# Keys that moved to the section of the stage that reads them: (old section, key) ->
# (new section, key). A run's config.json written before the move still loads.
MOVED_KEYS = {("export", "latency_runs"): ("report", "latency_runs"),
              ("export", "selective_threshold"): ("report", "selective_threshold"),
              ("report", "gpu_images"): ("report", "mediapipe_images")}


def from_dict(data: dict) -> Config:
    """Rebuilds a `Config` from `to_dict` output (e.g. a run's config.json), moved keys moved."""
    preset = data.get("preset", "digits")
    rest = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items() if k != "preset"}
    for (section, key), (new_section, new_key) in MOVED_KEYS.items():
        if key in rest.get(section, {}):
            rest.setdefault(new_section, {})[new_key] = rest[section].pop(key)
    return apply_overrides(Config(preset=preset), rest)
