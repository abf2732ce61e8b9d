"""Degradation: deeper plain nets train worse, ResNets do not (arXiv 1512.03385, sec. 4.2, Fig. 6).

    python -m experiments.degradation                      # digits, 4 nets
    python -m experiments.degradation --dataset fashion_mnist --train-subset 10000 \
        --out docs/experiments/degradation_fashion_mnist
    python -m experiments.degradation --dataset cifar10 --data-dir ~/cifar-10-python.tar.gz
    python -m experiments.degradation --models plain20,plain32,plain44,plain56 --epochs 30
    python -m experiments.degradation --models resnet20,resnet56,resnet20@seed1,resnet56@seed1,\
        resnet56@float32                                     # seeds and a float32 control
    python -m experiments.degradation --render-only --out docs/experiments/degradation
                                                           # judge and render again, no training

Every net trains with one identical recipe: the same seed, data order,
schedule and hyper-parameters. SGD with momentum 0.9 and weight decay on
kernels; the learning rate is divided by 10 at 50% and 75% of the epochs, as
the paper does at 32k and 48k of 64k iterations, after a warmup rising
linearly from a tenth of the rate (the paper's ResNet-110 holds the tenth,
then jumps, which threw the deep nets back to near-chance error) so that the
deep nets survive lr 0.1. The recipes are job/config.py's presets
`degradation-digits`, `degradation-fashion-mnist` and `degradation-cifar10`.
A net tagged `@seedN` trains with seed N on the same images (the training
subset is always drawn by `--seed`); one tagged `@float32` trains in float32
whatever `--train.mixed_precision auto` would pick.

Training error (the thin curves) is measured after each epoch on the whole
training split, images not augmented, model in inference mode: the error of
the weights at that point. The running mean of the mini-batch errors that
`fit` reports during the epoch (training mode, augmented if augmentation is on)
lags behind; it is kept as `train_error_running`. Test error is measured the
same way on the test split. Errors are percentages; `lr` is the rate of the
epoch's last step.

Every net is scored on the same training and test images, so depth
comparisons are paired, image by image (report/statistics.py: Newcombe's
interval and McNemar's exact test): a gap counts only when its 95% interval
excludes 0. For that each net keeps, from its last measured epoch, whether it
got each image right (`final_correct` in curves.json, one "0"/"1" character
per image of each split, in the splits' order).

Writes to the run directory (`--out`, default runs/degradation-<dataset>-<time>):
config.json (each net's resolved configuration: a later run of the same
folder keeps the nets whose data, model and train sections match), curves.json
(per net and epoch), summary.json (final errors and the verdict, decided by
verdict.py), and, rendered from the JSON by render.py, curves.csv, results.md
and degradation.png (Fig. 6 layout). train.py trains one net.
"""

import argparse
import json
import logging
import math
import os
import platform
import time

from experiments import paper
from experiments.degradation import render
from experiments.degradation.labels import MIXED_PRECISION_FOR_FLOAT32, NetLabel
from experiments.degradation.train import evaluation_arrays, train_net
from experiments.degradation.verdict import verdict
from report import statistics
from resnet_keras.registry import get_spec
from rundir.files import write_json

DEFAULT_MODELS = ("plain20", "plain56", "resnet20", "resnet56")

logger = logging.getLogger(__name__)

# The recipe of each dataset is a preset of job/config.py.
PRESETS = {"digits": "degradation-digits", "fashion_mnist": "degradation-fashion-mnist",
           "cifar10": "degradation-cifar10"}
DATASETS = tuple(PRESETS)
# The sections of a net's configuration that its training reads.
TRAINING_SECTIONS = ("data", "model", "train")


def net_config(dataset, *, model, data_dir=None, seed=0, precision="auto", epochs=None,
               batch_size=None, learning_rate=None, steps_per_epoch=None):
    """The `job.config.Config` that trains `model` with the dataset's preset.

    Args:
        dataset: one of `DATASETS`.
        model: registry name, e.g. `plain56`.
        data_dir: the dataset's archive or folder (CIFAR-10 only).
        seed: seeds initialization, shuffling and augmentation.
        precision: `auto` (the preset's `train.mixed_precision`) or `float32`.
        epochs: overrides the preset's; the step decays keep their fractions
            of the run and the warmup ends before the first of them.
        batch_size: overrides the preset's; the learning rate is taken as
            given, not rescaled.
        learning_rate: overrides the preset's peak rate.
        steps_per_epoch: None for one pass over the training split.

    Returns:
        A validated `Config` (stage `train` only).
    """
    from job import config as config_lib

    preset = config_lib.resolve(PRESETS[dataset]).train
    overrides = {"model.name": model, "data.data_dir": data_dir, "train.seed": seed,
                 "train.steps_per_epoch": steps_per_epoch}
    if precision == "float32":
        overrides["train.mixed_precision"] = MIXED_PRECISION_FOR_FLOAT32
    if epochs is not None:
        decays = tuple(e * epochs / preset.epochs for e in preset.lr_decay_epochs)
        # Only tiny test runs make the warmup reach the first decay: it is then
        # cut to half the epochs before that decay.
        first = decays[0] if decays else epochs
        overrides.update({"train.epochs": epochs, "train.lr_decay_epochs": decays})
        if preset.warmup_epochs > first / 2 or (preset.warmup_steps and steps_per_epoch
                                                 and preset.warmup_steps > first / 2
                                                 * steps_per_epoch):
            overrides.update({"train.warmup_epochs": first / 2, "train.warmup_steps": 0})
    if batch_size is not None:
        overrides.update({"train.batch_size": batch_size,
                          "train.reference_batch_size": batch_size})
    if learning_rate is not None:
        overrides["train.learning_rate"] = learning_rate
    return config_lib.resolve(PRESETS[dataset], overrides=overrides)


def recipe(config):
    """The recipe every net of a run shares, as summary.json records it."""
    t = config.train
    return {"preset": config.preset, "epochs": math.ceil(t.epochs), "batch_size": t.batch_size,
            "learning_rate": t.learning_rate, "augment": config.data.augment,
            "weight_decay": t.weight_decay, "momentum": t.momentum, "schedule": t.schedule,
            "lr_decay_epochs": list(t.lr_decay_epochs), "warmup_epochs": t.warmup_epochs,
            "warmup_steps": t.warmup_steps, "warmup_shape": t.warmup_shape}


def load_training_subset(dataset_name, *, data_dir=None, train_subset=None, seed=0):
    """The dataset, its training split cut to a stratified `train_subset` images.

    The images left out are held out as the (unused) validation split, by the
    same stratified split `load_dataset(val_split=...)` makes, so every class
    keeps its share.
    """
    from datasets import load_dataset

    dataset = load_dataset(dataset_name, data_dir=data_dir, seed=seed)
    if train_subset is None or train_subset >= dataset.num_train:
        return dataset
    return load_dataset(dataset_name, data_dir=data_dir, seed=seed,
                        val_split=dataset.num_train - train_subset)


def _write_json(value, out, name):
    # Whole or not at all: a run killed while writing keeps the nets it had finished.
    write_json(os.path.join(out, name), value, indent=1 if name == "curves.json" else 2)


def run(models, *, dataset_name, out, data_dir=None, seed=0, epochs=None, batch_size=None,
        learning_rate=None, steps_per_epoch=None, train_subset=None):
    """Trains each net with the dataset's preset and writes every output into `out`.

    A net whose curves an earlier run of the same recipe left in `out` is not
    trained again: a killed experiment resumes at the net it was training, and
    a finished one re-run only re-writes its summary.

    Args:
        models: `NetLabel` labels of CIFAR-style nets, e.g. ("plain20",
            "resnet20", "resnet20@seed1", "resnet20@float32").
        dataset_name: one of `DATASETS`.
        out: run directory (created).
        data_dir: the CIFAR-10 archive or its folder.
        seed: seeds everything random, and picks the training subset; a
            label's `@seedN` replaces it for that net's training only, so every
            net sees the same images.
        epochs, batch_size, learning_rate, steps_per_epoch: override the
            preset for every net alike (see `net_config`).
        train_subset: int, train on this many training images (stratified),
            or None for all of them.

    Returns:
        The summary dict written as summary.json.

    Raises:
        FileNotFoundError, ValueError: the dataset is missing or malformed.
    """
    from job import config as config_lib

    start = time.time()
    nets = [NetLabel.parse(m, seed=seed) for m in models]
    configs = {n.label: net_config(dataset_name, model=n.model, data_dir=data_dir, seed=n.seed,
                                   precision=n.precision, epochs=epochs, batch_size=batch_size,
                                   learning_rate=learning_rate, steps_per_epoch=steps_per_epoch)
               for n in nets}
    shared = configs[nets[0].label]
    dataset = load_training_subset(dataset_name, data_dir=data_dir, train_subset=train_subset,
                                   seed=seed)
    os.makedirs(out, exist_ok=True)
    setup = {"models": list(models), "dataset": dataset_name, "seed": seed,
             "train_subset": train_subset, "recipe": recipe(shared),
             "train_configs": {label: config_lib.to_dict(c) for label, c in configs.items()}}
    curves = _earlier_curves(out, setup)
    _write_json(setup, out, "config.json")
    logger.info("degradation on %s: %s; %d epochs each; outputs in %s", dataset_name,
                ", ".join(models), recipe(shared)["epochs"], out)
    arrays = evaluation_arrays(dataset) if len(curves) < len(nets) else None
    for n in nets:
        if n.label in curves:
            logger.info("%-9s kept from the earlier run in %s", n.label, out)
            continue
        curves[n.label] = {**train_net(configs[n.label], dataset, label=n.label, arrays=arrays,
                                       clock=start),
                           "model": n.model, "seed": n.seed, "precision_setting": n.precision}
        # After each net, so that a killed run keeps what it measured.
        _write_json(curves, out, "curves.json")
        render.write_csv(curves, out)
    curves = {n.label: curves[n.label] for n in nets}
    summary = summarize(curves, dataset=dataset_name, num_train=dataset.num_train,
                        num_test=dataset.num_test, config=shared, seed=seed,
                        train_subset=dataset.num_train if train_subset else None)
    _write_json(summary, out, "summary.json")
    render.render(summary, curves, out)
    for line in render.headlines(summary):
        logger.info("%s", line)
    logger.info("done in %.0f s; outputs in %s", time.time() - start, out)
    return summary


def summarize(curves, *, dataset, num_train, num_test, config, seed, train_subset=None):
    """The summary.json dict: final errors per net, the paper's, the verdict.

    Args:
        curves: curves.json's dict, in `--models` order.
        dataset: one of `DATASETS`.
        num_train, num_test: the images each net was scored on.
        config: the first net's `Config`, whose recipe every net shares.
        seed: the experiment's (`run`'s).
        train_subset: the training images when a subset was drawn, else None.

    Returns:
        dict; its `verdict` is `verdict.verdict`'s.
    """
    return {
        "experiment": "degradation (arXiv 1512.03385, sec. 4.2, Fig. 6)",
        "dataset": dataset, "num_train": num_train, "num_test": num_test,
        "train_subset": train_subset, "models": list(curves),
        "recipe": recipe(config), "seed": seed,
        "lr_decay_epochs": list(config.train.lr_decay_epochs),
        "warmup_epochs": config.train.warmup_epochs,
        "training_error": "whole training split, not augmented, inference mode, after "
                          "each epoch",
        "nets": net_rows(curves, dataset=dataset, seed=seed),
        # The rule the verdict's gaps are judged by (a summary without it predates it).
        "noise_test": f"paired: {statistics.INTERVAL_METHOD}; {statistics.TEST_METHOD}",
        "verdict": verdict(curves, seed=seed),
        "wall_seconds": training_seconds(curves),
        "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
    }


def net_rows(curves, *, dataset, seed):
    """summary.json's `nets`: each net's final errors, size, time and precision.

    Args:
        curves: curves.json's dict, in `--models` order.
        dataset: one of `DATASETS`.
        seed: the experiment's, for labels without `@seedN`.

    Returns:
        list of dicts, one a net; `cpu_seconds` is None for a net trained before
        its process CPU time was recorded.
    """
    rows = []
    for label, c in curves.items():
        n = NetLabel.parse(label, seed=seed)
        rows.append({
            "run": label, "model": n.model, "seed": n.seed, "residual": c["residual"],
            "depth": c["depth"], "params": c["params"], "epochs": len(c["epoch"]),
            "train_error": c["train_error"][-1] if c["train_error"] else None,
            "test_error": c["test_error"][-1] if c["test_error"] else None,
            "paper_test_error": (paper.CIFAR10_TEST_ERROR.get(n.model)
                                 if dataset == "cifar10" else None),
            "seconds": c["seconds"][-1] if c["seconds"] else None,
            "cpu_seconds": (c.get("cpu_seconds") or [None])[-1],
            "diverged_at": c["diverged_at"],
            "precision": c.get("precision"),
        })
    return rows


def training_seconds(curves):
    """The nets' training time in seconds, summed (summary.json's `wall_seconds`)."""
    return round(sum(c["seconds"][-1] for c in curves.values() if c["seconds"]), 1)


def render_only(out):
    """Judges the nets of run folder `out` again and re-renders its outputs; trains nothing.

    For a folder this command wrote, or the single-module degradation.py
    before it: summary.json keeps its recipe and machine; its nets, verdict and
    time are made again from curves.json, nets finished since included; then
    curves.csv, results.md and degradation.png are rendered from the two.

    Returns:
        The summary dict written back as summary.json.

    Raises:
        FileNotFoundError: `out` lacks summary.json or curves.json.
    """
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(out, "curves.json")) as f:
        curves = json.load(f)
    # The verdict reads the nets in --models order, as `run` passes them (older summaries
    # have no `models`: their curves.json is in that order); nets finished since the
    # summary was written follow in curves.json's order.
    order = [label for label in summary.get("models", curves) if label in curves]
    added = {label: curves[label] for label in curves if label not in order}
    curves = {label: curves[label] for label in order + list(added)}
    summary.update(models=list(curves), nets=net_rows(curves, dataset=summary["dataset"],
                                                      seed=summary["seed"]),
                   verdict=verdict(curves, seed=summary["seed"]),
                   # A summary's time is kept as measured; the added nets' time is added.
                   wall_seconds=round(summary["wall_seconds"] + training_seconds(added), 1))
    _write_json(summary, out, "summary.json")
    render.render(summary, curves, out)
    return summary


def _earlier_curves(out, setup):
    """The finished nets an earlier run left in `out`, by label; `out`'s must be this setup's.

    Raises:
        ValueError: `out` holds nets of another dataset, seed, subset or recipe,
            or nets this run does not list: it would overwrite them.
    """
    try:
        with open(os.path.join(out, "config.json")) as f:
            earlier = json.load(f)
        with open(os.path.join(out, "curves.json")) as f:
            curves = json.load(f)
    except (OSError, ValueError):
        return {}
    wanted = json.loads(json.dumps(setup["train_configs"]))

    def training(configs, label):
        # Only what training reads: a key added to a later stage's section keeps the runs.
        config = configs.get(label) or {}
        return {section: config.get(section) for section in TRAINING_SECTIONS}

    different = [k for k in ("dataset", "seed", "train_subset") if earlier.get(k) != setup[k]]
    different += [label for label in curves if label not in wanted
                  or training(earlier.get("train_configs", {}), label) != training(wanted, label)]
    if different:
        raise ValueError(f"{out} holds an earlier degradation run whose {different[0]} differs "
                         f"from this one's (or that this run does not list); give another "
                         f"--out, or list its nets with the same settings to resume it.")
    return {label: c for label, c in curves.items()
            if c.get("diverged_at") or len(c["epoch"]) == math.ceil(wanted[label]["train"]
                                                                   ["epochs"])}


def _check_models(labels):
    for label in labels:
        name = NetLabel.parse(label, seed=0).model  # unknown tags: ValueError naming them
        spec = get_spec(name)  # unknown names: ValueError listing the valid ones
        if spec.stem != "cifar":
            raise ValueError(f"{name} is an ImageNet net; this experiment trains the 32x32 "
                             f"CIFAR nets, plainN and resnetN with N = 20, 32, 44, 56, 110 "
                             f"(e.g. --models {','.join(DEFAULT_MODELS)}).")
    if len(set(labels)) != len(labels):
        raise ValueError(f"--models lists a net twice: {','.join(labels)}.")


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits",
                        help=f"{' or '.join(DATASETS)} (default digits)")
    parser.add_argument("--data-dir", help="CIFAR-10 archive or its folder (default: Keras cache)")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help=f"comma-separated nets (default {','.join(DEFAULT_MODELS)}); "
                        f"@seedN trains one with another seed, @float32 in float32, e.g. "
                        f"resnet56@seed1,resnet56@float32")
    parser.add_argument("--epochs", type=int, help="default: the preset's (digits 10, "
                        "cifar10 182)")
    parser.add_argument("--batch-size", type=int, help="default: the preset's (digits 64, "
                        "cifar10 128)")
    parser.add_argument("--lr", type=float,
                        help="peak learning rate (default: the preset's, digits 0.05, "
                        "cifar10 0.1)")
    parser.add_argument("--steps-per-epoch", type=int,
                        help="default: one pass over the training split")
    parser.add_argument("--train-subset", type=int,
                        help="train on this many training images, a stratified subset "
                        "(default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="run directory (default runs/degradation-<dataset>-<time>)")
    parser.add_argument("--render-only", action="store_true",
                        help="train nothing: judge the nets of --out again from its curves.json "
                        "and re-render summary.json's verdict, curves.csv, results.md and "
                        "degradation.png (the other flags are not read)")
    return parser.parse_args(argv)


def _train(args):
    if args.dataset not in PRESETS:
        raise ValueError(f"--dataset {args.dataset!r} is not valid; valid: "
                         f"{', '.join(DATASETS)}.")
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    _check_models(models)
    for flag, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size),
                        ("--steps-per-epoch", args.steps_per_epoch),
                        ("--train-subset", args.train_subset)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}.")
    if args.lr is not None and not args.lr > 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}.")
    out = args.out or os.path.join(
        "runs", f"degradation-{args.dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
    run(models, dataset_name=args.dataset, out=out, data_dir=args.data_dir, seed=args.seed,
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
        steps_per_epoch=args.steps_per_epoch, train_subset=args.train_subset)


def _render_only(args):
    if not args.out:
        raise ValueError("--render-only needs --out, the run folder to re-render.")
    summary = render_only(args.out)
    for line in render.headlines(summary):
        logger.info("%s", line)
    logger.info("re-rendered %s from its JSON", args.out)


def main(argv=None) -> int:
    """The command line (the module docstring lists its uses).

    Returns:
        int, the exit status: 0, or 2 after one `error:` line on stderr.
    """
    args = _parse_args(argv)
    from job import stages
    from rundir.progress import show_progress
    show_progress()
    return stages.command_line(lambda: (_render_only if args.render_only else _train)(args))
