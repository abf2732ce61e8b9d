"""Tests for job/config.py: presets, overrides and files, checks, the saved configuration."""

import dataclasses
import json
import typing

import pytest

from job import config as config_lib


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


def test_finetune_preset_and_head_configuration():
    config = config_lib.resolve("finetune")
    assert (config.model.name, config.model.weights, config.data.dataset) == \
        ("resnet50", "imagenet", "folder")
    assert (config.train.learning_rate, config.train.batch_size, config.train.schedule,
            config.train.weight_decay, config.train.head_epochs) == \
        (0.01, 64, "cosine", 1e-4, 1)
    with pytest.raises(ValueError, match="model.weights is not set"):
        config_lib.resolve(overrides={"train.head_epochs": "1"})
    with pytest.raises(ValueError, match="train.head_epochs must be >= 0"):
        config_lib.resolve(overrides={"train.head_epochs": "-1", "model.weights": "x.h5"})


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
    (dict(overrides={"train.warmup_epochs": "1", "train.warmup_steps": "400"}),
     "both give the warmup's length; set one of them to 0"),
    (dict(overrides={"train.warmup_shape": "constant"}),
     "only with train.schedule=step; the cosine schedule warms up linearly"),
    (dict(overrides={"train.warmup_shape": "cosine"}), "Valid values: linear, constant"),
    (dict(overrides={"train.distribute": "mirror"}),
     "train.distribute='mirror' is not valid. Valid values: auto, none, mirrored, multi_worker, "
     "tpu."),
    (dict(overrides={"train.mixed_precision": "fp16"}),
     "train.mixed_precision='fp16' is not valid. Valid values: auto, on, off, float16, bfloat16."),
    (dict(overrides={"train.xla": "yes"}), "Valid values: auto, on, off."),
    (dict(overrides={"data.augmentation": "flip"}),
     "data.augmentation='flip' is not valid. Valid values: auto, inception, pad_crop_flip, "
     "pad_crop, none."),
])
def test_bad_configuration_has_clear_messages(kwargs, match):
    with pytest.raises(ValueError, match=match):
        config_lib.resolve(**kwargs)


def test_the_closed_sets_and_the_confidence_range_are_their_stages():
    from report import decide as report_decide
    from training import options

    hints = typing.get_type_hints(config_lib.TrainConfig)
    assert {key: typing.get_args(hints[key]) for key in (
        "schedule", "warmup_shape", "mixed_precision", "distribute", "xla")} == {
        "schedule": options.SCHEDULES, "warmup_shape": options.WARMUP_SHAPES,
        "mixed_precision": options.PRECISION_SETTINGS, "distribute": options.DISTRIBUTIONS,
        "xla": options.SWITCHES}
    confidence = config_lib.RANGES["report.confidence"]
    assert (confidence.low, confidence.high) == report_decide.CONFIDENCE_RANGE


@pytest.mark.parametrize("name, text, message", [
    ("c.json", '{"train": {"epochs": 5', "is not valid JSON: Expecting"),
    ("c.json", "[5]", "must hold a mapping of sections (data, model, train, ...) to their keys, "
                      "got a list."),
    ("c.yaml", "- 5\n", "must hold a mapping of sections (data, model, train, ...) to their keys, "
                        "got a list."),
])
def test_a_configuration_file_that_is_no_mapping_is_named(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError) as error:
        config_lib.resolve(file=str(path))
    assert str(error.value).startswith(f"Configuration file {path} ")
    assert message in str(error.value)


def test_val_split_keeps_a_count_an_int(tmp_path):
    """5000 from the command line, a YAML file or a preset is the count 5000, not 5000.0."""
    assert repr(config_lib.resolve(overrides={"data.val_split": "5000"}).data.val_split) == "5000"
    assert repr(config_lib.resolve(overrides={"data.val_split": "0.1"}).data.val_split) == "0.1"
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  val_split: 5000\n")
    assert repr(config_lib.resolve(file=str(path)).data.val_split) == "5000"
    saved = config_lib.to_dict(config_lib.resolve("cifar10-paper"))
    assert repr(config_lib.from_dict(json.loads(json.dumps(saved))).data.val_split) == "5000"


def _numeric_keys():
    """Every int or float key of the configuration (None allowed or not)."""
    keys = []
    for section in dataclasses.fields(config_lib.Config):
        if section.default_factory is dataclasses.MISSING:  # preset, stages
            continue
        hints = typing.get_type_hints(section.default_factory)
        for name, hint in hints.items():
            if typing.get_origin(hint) is tuple:  # lr_decay_epochs: checked as a schedule
                continue
            kinds = set(typing.get_args(hint)) - {type(None)} or {hint}
            if kinds & {int, float} and bool not in kinds:
                keys.append(f"{section.name}.{name}")
    return keys


def test_every_numeric_key_has_a_range():
    # data.val_split is a count or a fraction: checked by its own rule, below.
    assert sorted(set(_numeric_keys()) - {"data.val_split"}) == sorted(config_lib.RANGES)


@pytest.mark.parametrize("key, value, message", [
    ("train.steps_per_epoch", "-1", "train.steps_per_epoch must be >= 1, got -1."),
    ("data.image_size", "100000", "data.image_size must be >= 8 and <= 1024, got 100000."),
    ("train.reference_batch_size", "0", "train.reference_batch_size must be >= 1, got 0."),
    ("train.label_smoothing", "1.5", "train.label_smoothing must be >= 0 and < 1, got 1.5."),
    ("train.label_smoothing", "1", "train.label_smoothing must be >= 0 and < 1, got 1.0."),
    ("export.calibration_size", "0", "export.calibration_size must be >= 1, got 0."),
    ("report.latency_runs", "0", "report.latency_runs must be >= 1, got 0."),
    ("train.momentum", "1", "train.momentum must be >= 0 and < 1, got 1.0."),
    ("train.verbose", "3", "train.verbose must be >= 0 and <= 2, got 3."),
    ("train.head_learning_rate", "0", "train.head_learning_rate must be > 0, got 0.0."),
    ("data.val_split", "1.5", "data.val_split=1.5 is neither a fraction in [0, 1)"),
    ("data.val_split", "-5", "data.val_split must be >= 0 (a count of images), got -5."),
    ("train.lr_decay_epochs", "30,10", "train.lr_decay_epochs=30,10 must be increasing"),
    ("report.budget_points", "-0.5", "report.budget_points must be >= 0, got -0.5."),
    ("report.class_budget_points", "-1", "report.class_budget_points must be >= 0, got -1.0."),
    ("report.confidence", "1", "report.confidence must be >= 0.5 and < 1, got 1.0."),
    ("report.confidence", "0.3", "report.confidence must be >= 0.5 and < 1, got 0.3."),
])
def test_a_value_out_of_its_range_names_the_key_and_the_range(key, value, message):
    with pytest.raises(ValueError) as error:
        config_lib.resolve(overrides={key: value})
    assert str(error.value).startswith(message)


@pytest.mark.parametrize("key, value, taken", [
    ("train.label_smoothing", "0.1", 0.1),
    ("data.image_size", "1024", 1024),  # both ends of a closed range
    ("data.image_size", "8", 8),
    ("train.verbose", "0", 0),
    ("data.val_split", "0.1", 0.1),  # a fraction stays a float, a count an int
    ("data.val_split", "5000", 5000),
    ("train.steps_per_epoch", "1", 1),
    ("train.momentum", "0.99", 0.99),
    ("report.confidence", "0.99", 0.99),
    ("report.confidence", "0.5", 0.5),  # the closed end of [0.5, 1)
    ("report.budget_points", "0", 0.0),
    ("train.head_learning_rate", "1e-05", 1e-05),
])
def test_a_value_inside_its_range_is_taken(key, value, taken):
    section, name = key.split(".")
    assert getattr(getattr(config_lib.Config(), section), name) != taken  # not the default
    resolved = getattr(getattr(config_lib.resolve(overrides={key: value}), section), name)
    assert (resolved, type(resolved)) == (taken, type(taken))


def _inside(value, valid):
    """Whether `value` lies in the `config_lib.Range` `valid`, bound by bound."""
    above = valid.low is None or (value > valid.low if valid.low_open else value >= valid.low)
    below = valid.high is None or (value < valid.high if valid.high_open else value <= valid.high)
    return above and below


@pytest.mark.parametrize("preset", list(config_lib.PRESETS))
def test_every_preset_is_inside_the_ranges(preset):
    config = config_lib.resolve(preset)
    for section, keys in config_lib.PRESETS[preset].items():  # the preset is applied
        if not isinstance(keys, dict):  # stages
            assert getattr(config, section) == keys
            continue
        for name, value in keys.items():
            assert getattr(getattr(config, section), name) == value
    for key, valid in config_lib.RANGES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        assert value is None or _inside(value, valid), \
            f"{preset}: {key}={value} is not {valid.describe()}"
    val_split = config.data.val_split
    assert 0 <= val_split and (isinstance(val_split, int) or val_split < 1)
    decays = config.train.lr_decay_epochs
    assert all(e > 0 for e in decays) and list(decays) == sorted(set(decays))


def test_a_run_written_before_keys_moved_still_loads():
    # docs/results/default_run/config.json predates the move of these keys to `report`.
    saved = config_lib.to_dict(config_lib.Config())
    saved["export"].update(latency_runs=7, selective_threshold=2.5)
    saved["report"]["gpu_images"] = 9
    for section, key in config_lib.MOVED_KEYS.values():
        del saved[section][key]
    config = config_lib.from_dict(saved)
    assert (config.report.latency_runs, config.report.selective_threshold,
            config.report.mediapipe_images) == (7, 2.5, 9)
