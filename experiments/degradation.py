"""Degradation: deeper plain nets train worse, ResNets do not (arXiv 1512.03385, sec. 4.2, Fig. 6).

    python -m experiments.degradation                      # digits, 4 nets
    python -m experiments.degradation --dataset fashion_mnist --train-subset 10000 \
        --out docs/experiments/degradation_fashion_mnist
    python -m experiments.degradation --dataset cifar10 --data-dir ~/cifar-10-python.tar.gz
    python -m experiments.degradation --models plain20,plain32,plain44,plain56 --epochs 30
    python -m experiments.degradation --models resnet20,resnet56,resnet20@seed1,resnet56@seed1,\
        resnet56@float32                                     # seeds and a float32 control

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
config.json, curves.json and curves.csv (per net and epoch), degradation.png
(Fig. 6 layout), summary.json (final errors and the verdict) and results.md
(rendered from summary.json).
"""

import argparse
import csv
import dataclasses
import json
import logging
import math
import os
import platform
import re
import sys
import time

from experiments import paper
from report import statistics
from resnet_keras.registry import get_spec

DEFAULT_MODELS = ("plain20", "plain56", "resnet20", "resnet56")
# What a run's `@float32` tag sets `train.mixed_precision` to; without it the preset's stays.
FLOAT32 = "off"

logger = logging.getLogger(__name__)

# The recipe of each dataset is a preset of job/config.py.
PRESETS = {"digits": "degradation-digits", "fashion_mnist": "degradation-fashion-mnist",
           "cifar10": "degradation-cifar10"}
DATASETS = tuple(PRESETS)
# The sections of a net's configuration that its training reads.
TRAINING_SECTIONS = ("data", "model", "train")


# ---------------------------------------------------------------- training


@dataclasses.dataclass(frozen=True)
class Run:
    """One net trained once: `resnet56`, `resnet56@seed1`, `resnet56@float32`.

    Attributes:
        label: the `--models` entry, the run's key in curves.json.
        model: the registry name.
        seed: the `@seedN` tag, or the experiment's seed.
        precision: `float32` with the `@float32` tag, else `auto`.
    """

    label: str
    model: str
    seed: int
    precision: str

    @classmethod
    def parse(cls, label, *, seed):
        model, *tags = label.split("@")
        run_seed, precision = seed, "auto"
        for tag in tags:
            if re.fullmatch(r"seed\d+", tag):
                run_seed = int(tag[4:])
            elif tag == "float32":
                precision = "float32"
            else:
                raise ValueError(f"--models entry {label!r} has an unknown tag @{tag}; the tags "
                                 f"are @seedN and @float32 (e.g. resnet56@seed1@float32).")
        return cls(label=label, model=model, seed=run_seed, precision=precision)


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
        overrides["train.mixed_precision"] = FLOAT32
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


def evaluation_arrays(dataset):
    """The training split (not augmented) and the test split as in-memory arrays.

    Both splits are evaluated after every epoch of every net: preparing their
    pixels once is cheaper than running the input pipeline each time. CIFAR-10
    takes 0.7 GB this way.

    Returns:
        {"train": (float32 images, int32 labels), "test": (...)}.
    """
    import numpy as np

    def collect(batches):
        images, labels = zip(*batches.as_numpy_iterator())
        return np.concatenate(images), np.concatenate(labels)

    batch = min(256, dataset.num_train)
    return {"train": collect(dataset.train(batch, shuffle=False, augment=False)),
            "test": collect(dataset.test(batch))}


def _make_recorder(keras, *, name, arrays, batch_size, guard, clock, total_epochs):
    import numpy as np

    from datasets.input_pipeline import array_batches
    from training.loop import current_learning_rate

    class ErrorCurves(keras.callbacks.Callback):
        """Measures training and test error after every epoch and prints one line."""

        def __init__(self):
            super().__init__()
            self.start, self.cpu_start = time.time(), time.process_time()
            self.curves = {k: [] for k in ("epoch", "train_error", "train_error_running",
                                           "test_error", "loss", "lr", "seconds",
                                           "cpu_seconds")}
            self.curves["final_correct"] = None

        def _correct(self, split):
            images, labels = arrays[split]
            scores = self.model.predict(array_batches(images, batch_size=batch_size), verbose=0)
            return np.asarray(scores).argmax(-1) == np.asarray(labels).reshape(-1)

        def on_epoch_end(self, epoch, logs=None):
            if guard.diverged_at:
                return  # The weights are NaN: nothing left to measure.
            logs = logs or {}
            correct = {split: self._correct(split) for split in ("train", "test")}
            # The last measured epoch's flags: what the paired depth comparisons need.
            self.curves["final_correct"] = {split: "".join("1" if c else "0" for c in flags)
                                            for split, flags in correct.items()}
            row = {"epoch": epoch + 1,
                   "train_error": 100 * (1 - float(correct["train"].mean())),
                   "train_error_running": 100 * (1 - float(logs["accuracy"])),
                   "test_error": 100 * (1 - float(correct["test"].mean())),
                   "loss": float(logs["loss"]),
                   "lr": current_learning_rate(self.model.optimizer),
                   "seconds": round(time.time() - self.start, 2),
                   # CPU time of every thread: the cost, whatever else shared the machine.
                   "cpu_seconds": round(time.process_time() - self.cpu_start, 2)}
            for key, value in row.items():
                self.curves[key].append(value)
            logger.info("%-9s epoch %3d/%d  train error %6.2f%%  test error %6.2f%%  loss "
                        "%.4f  lr %.3g  [%.0f s; total %.0f s]", name, epoch + 1, total_epochs,
                        row["train_error"], row["test_error"], row["loss"], row["lr"],
                        row["seconds"], time.time() - clock)

    return ErrorCurves()


def train_net(config, dataset, *, label=None, arrays=None, clock=None):
    """Trains `config.model` on `dataset` and records its error curves.

    Args:
        config: a `Config` from `net_config`.
        dataset: the `datasets.Dataset` named in the config.
        label: the net's name in the progress lines (default the model's).
        arrays: `evaluation_arrays(dataset)`, computed here if None.
        clock: `time.time()` at the start of the whole experiment, for the
            progress lines' total.

    Returns:
        dict of per-epoch lists (`epoch`, `train_error`, `train_error_running`,
        `test_error`, `loss`, `lr`, `seconds`) plus `residual`, `depth`,
        `params` and `diverged_at` ((epoch, step) of a NaN loss, or None).
    """
    from resnet_keras.backend import keras
    from training import distribute
    from training.loop import NaNGuard, compiled_training_model, fit_inputs
    from training.plan import TrainingPlan

    cfg = config.train
    # Drops the previous net's graph state, as Keras advises when building models in a loop.
    keras.backend.clear_session()
    keras.utils.set_random_seed(cfg.seed)
    precision = distribute.choose_precision(cfg.mixed_precision)
    plan = TrainingPlan.for_training(cfg, dataset, replicas=1)
    model = compiled_training_model(config.model, cfg, dataset=dataset, plan=plan,
                                    jit_compile=distribute.resolve_switch(cfg.xla),
                                    policy=precision.policy)
    # The recorder measures both splits itself, so fit_inputs' test pipeline is unused.
    train_ds, _ = fit_inputs(dataset, batch_size=plan.global_batch,
                             label_smoothing=cfg.label_smoothing, seed=cfg.seed,
                             augment=config.data.augment)
    guard = NaNGuard()
    name = label or config.model.name
    recorder = _make_recorder(
        keras, name=name, arrays=arrays or evaluation_arrays(dataset),
        # Larger evaluation batches: no gradients to hold, fewer steps, faster on CPU.
        batch_size=4 * plan.global_batch, guard=guard, clock=clock or time.time(),
        total_epochs=plan.epochs)
    logger.info("%-9s %s parameters, %s, precision %s (%s) [total %.0f s]",
                name, f"{model.count_params():,}", plan.describe(),
                precision.policy, precision.reason, time.time() - (clock or time.time()))
    model.fit(train_ds, epochs=plan.epochs, steps_per_epoch=plan.steps_per_epoch,
              callbacks=[guard, recorder], verbose=0)
    spec = get_spec(config.model.name)
    if guard.diverged_at:
        epoch, step = guard.diverged_at
        logger.info("%-9s diverged (NaN loss) at epoch %d, step %d; its curves stop at the "
                    "last finite epoch", name, epoch, step)
    return {**recorder.curves, "residual": spec.residual, "depth": spec.depth,
            "params": model.count_params(), "steps_per_epoch": plan.steps_per_epoch,
            "precision": precision.to_dict(),
            "diverged_at": list(guard.diverged_at) if guard.diverged_at else None}


# ---------------------------------------------------------------- verdict


def _relation(a, b):
    return "higher" if a > b else "lower" if a < b else "equal"


def _gap(shallow, deep, split):
    """The paired gap deep - shallow in error points on `split`, or None without per-image flags.

    Both nets were scored on the same images: `report.statistics` compares
    their accuracies (shallow the reference), and the error gap is that
    difference negated.
    """
    flags = [(net.get("final_correct") or {}).get(split) for net in (shallow, deep)]
    if not all(flags):
        return None
    shallow_right, deep_right = ([c == "1" for c in f] for f in flags)
    accuracy = statistics.paired_difference(statistics.paired_counts(shallow_right, deep_right))
    low, high = accuracy["interval_points"]
    return {"n": accuracy["n"], "only_deep_wrong": accuracy["reference_only"],
            "only_shallow_wrong": accuracy["variant_only"],
            # 0.0 - x: a zero gap is +0.00, never -0.00.
            "difference_points": 0.0 - accuracy["difference_points"],
            "interval_points": [0.0 - high, 0.0 - low],
            "p_value": accuracy["p_value"], "within_noise": accuracy["within_noise"]}


def _pair(curves, shallow, deep, *, expect, key="train_error"):
    """How `deep` ends against `shallow` on `key`; None entries when a net has no epoch.

    A relation is "reproduced" only when its gap is also beyond the noise: its
    paired interval excludes 0 (when the nets kept their per-image results).
    """
    result = {"shallow": shallow, "deep": deep, "expected": expect}
    missing = [n for n in (shallow, deep) if not curves[n][key]]
    if missing:
        result.update(reproduced=None, reason=f"{missing[0]} diverged before its first "
                                              f"epoch ended")
        return result
    s, d = curves[shallow], curves[deep]
    train_gap, test_gap = (_gap(s, d, split) for split in ("train", "test"))
    result.update(
        shallow_final=s[key][-1], deep_final=d[key][-1],
        shallow_mean=sum(s[key]) / len(s[key]), deep_mean=sum(d[key]) / len(d[key]),
        shallow_test=s["test_error"][-1], deep_test=d["test_error"][-1],
        relation=_relation(d[key][-1], s[key][-1]),
        train_gap=train_gap, beyond_noise=None if train_gap is None
        else not train_gap["within_noise"],
        test_relation=_relation(d["test_error"][-1], s["test_error"][-1]),
        test_gap=test_gap, test_beyond_noise=None if test_gap is None
        else not test_gap["within_noise"])
    result["reproduced"] = (result["relation"] == expect
                            and result["beyond_noise"] is not False)
    return result


def _interval_words(gap):
    if gap is None:
        return ""
    return (f", {gap['difference_points']:+.2f} points, 95% CI "
            f"{gap['interval_points'][0]:+.2f} to {gap['interval_points'][1]:+.2f}, McNemar "
            + ("p < 0.001" if gap["p_value"] < 0.001 else f"p = {gap['p_value']:.3f}"))


def _sentence(title, check):
    if check is None:
        return f"{title}: not tested (it needs two depths of that kind of net)."
    deep, shallow = check["deep"], check["shallow"]
    if check["reproduced"] is None:
        return f"{title}: cannot be judged: {check['reason']}."
    relation = {"higher": "a higher training error than",
                "lower": "a lower training error than",
                "equal": "the same training error as"}[check["relation"]]
    outcome = "reproduced" if check["reproduced"] else "not reproduced"
    if check["relation"] == check["expected"] and check["beyond_noise"] is False:
        outcome += " (the gap is within the noise: its 95% interval contains 0)"
    test = {True: "beyond the noise", False: "within the noise"}.get(check["test_beyond_noise"])
    sentence = (f"{title}: {outcome}. {deep} ends with {relation} {shallow} "
                f"({check['deep_final']:.2f}% vs {check['shallow_final']:.2f}%"
                f"{_interval_words(check.get('train_gap'))}; averaged over "
                f"all epochs {check['deep_mean']:.2f}% vs {check['shallow_mean']:.2f}%; final "
                f"test error {check['deep_test']:.2f}% vs {check['shallow_test']:.2f}%"
                f"{_interval_words(check.get('test_gap'))}"
                f"{', ' + check['test_relation'] + ', ' + test if test else ''}).")
    if check["expected"] == "lower" and check["shallow_final"] == 0:
        sentence += (f" {shallow} already fits every training image, so no net can end "
                     f"lower: this run cannot show that claim.")
    return sentence


CLAIMS = ("degradation", "residual", "plain_vs_residual")
_TITLES = {"degradation": "Degradation (Fig. 6 left: the deeper plain net trains worse)",
           "residual": "Residual learning (Fig. 6 right: the deeper ResNet trains better)",
           "plain_vs_residual": "Plain against residual at equal depth"}


def _checks(curves, models):
    """Fig. 6's comparisons among nets trained alike; `models` maps their labels to names."""
    def by_depth(residual):
        return sorted((n for n in models if get_spec(models[n]).residual == residual),
                      key=lambda n: get_spec(models[n]).depth)

    plain, residual = by_depth(False), by_depth(True)
    checks = {
        "degradation": (_pair(curves, plain[0], plain[-1], expect="higher")
                        if len(plain) > 1 else None),
        "residual": (_pair(curves, residual[0], residual[-1], expect="lower")
                     if len(residual) > 1 else None),
        "plain_vs_residual": None,
    }
    shared = sorted({get_spec(models[n]).depth for n in plain}
                    & {get_spec(models[n]).depth for n in residual})
    if shared:
        pick = {get_spec(models[n]).residual: n for n in models
                if get_spec(models[n]).depth == shared[-1]}
        # Here "shallow" is the plain net and "deep" the residual one, same depth.
        checks["plain_vs_residual"] = _pair(curves, pick[False], pick[True], expect="lower")
    return checks


def _condition_words(seed, precision):
    return f"seed {seed}" + (", float32" if precision == "float32" else "")


def _claim(judged):
    """One claim over the runs that test it: reproduced only if every judged run reproduces it."""
    decided = [c["reproduced"] for _, c in judged if c["reproduced"] is not None]
    first = judged[0][1]
    return {**first, "reproduced": all(decided) if decided else None,
            "judged_runs": len(decided), "reproduced_runs": sum(decided),
            "runs": [{**c, "seed": cond[0], "precision_setting": cond[1]} for cond, c in judged]}


def _claim_sentences(claim, judged):
    sentences = [_sentence(_TITLES[claim], judged[0][1])]
    for (seed, precision), check in judged[1:]:
        sentences.append(_sentence(f"The same with {_condition_words(seed, precision)}",
                                   check))
    if len(judged) > 1:
        result = _claim(judged)
        n, k = result["judged_runs"], result["reproduced_runs"]
        sentences.append(f"{_TITLES[claim].split(' (')[0]} over its {n} runs: "
                         + ("reproduced in every one." if n and k == n
                            else f"reproduced in {k} of {n}, so not reproduced."))
    return sentences


def _twins(runs, vary):
    """Pairs of labels of one model that differ only in `vary` (`seed` or `precision`)."""
    pairs, seen = [], {}
    for r in runs.values():
        key = (r.model, r.precision if vary == "seed" else r.seed)
        if key in seen and getattr(seen[key], vary) != getattr(r, vary):
            pairs.append((seen[key].label, r.label))
        seen.setdefault(key, r)
    return pairs


def _twin_check(curves, reference, other):
    a, b = curves[reference], curves[other]
    if not (a["train_error"] and b["train_error"]):
        return None
    return {"reference": reference, "other": other,
            "reference_train": a["train_error"][-1], "other_train": b["train_error"][-1],
            "reference_test": a["test_error"][-1], "other_test": b["test_error"][-1],
            "train_gap": _gap(a, b, "train"), "test_gap": _gap(a, b, "test")}


def _twin_sentence(check, *, what):
    def beyond(gap):
        return "" if gap is None else (", within the noise" if gap["within_noise"]
                                       else ", beyond the noise")

    return (f"{what}: {check['other']} against {check['reference']}, training error "
            f"{check['other_train']:.2f}% vs {check['reference_train']:.2f}%"
            f"{_interval_words(check['train_gap'])}{beyond(check['train_gap'])}; test error "
            f"{check['other_test']:.2f}% vs {check['reference_test']:.2f}%"
            f"{_interval_words(check['test_gap'])}{beyond(check['test_gap'])}.")


def verdict(curves, *, seed=0, num_train=None, num_test=None):
    """Judges the paper's Fig. 6 claims from the final training errors.

    Plain nets: does the deepest end with a higher training error than the
    shallowest (degradation, paper sec. 4.1-4.2)? Residual nets: does the
    deepest end with a lower one? And at the greatest depth both kinds share,
    does the residual net end lower than the plain one? Each claim is judged
    among the nets of one seed and precision, in every such group that can
    test it, and holds only if it holds in each. Nets trained twice, with two
    seeds or in bfloat16 and float32, are compared with each other too: the
    seed-to-seed gap is the noise a claim's gap must stand out from, and the
    precision gap says whether 16-bit arithmetic costs the deep nets.

    Args:
        curves: {run label (`Run`): dict with per-epoch `train_error` and
            `test_error` lists in % and `final_correct` (per-image flags, or
            None), as `train_net` returns}; models must be registered. Without
            flags a gap's noise is not tested.
        seed: the experiment's seed, a label's without `@seedN`; its group
            (not float32) leads each claim.
        num_train: training images the training error is measured on: what one
            image is worth.
        num_test: test images.

    Returns:
        dict with `degradation`, `residual` and `plain_vs_residual` (each None
        when no group has the nets to compare; else the leading group's check,
        with `reproduced` over all groups: True, False, or None if every net
        concerned diverged before its first epoch; `runs` the check of each
        group; `train_gap` and `test_gap` the paired comparisons, or None
        without flags), `seeds` and `precision` (the twin comparisons), and
        `text`, the paragraph.
    """
    runs = {label: Run.parse(label, seed=seed) for label in curves}
    groups = {}
    for r in runs.values():
        groups.setdefault((r.seed, r.precision), {})[r.label] = r.model
    order = sorted(groups, key=lambda g: (g[1] != "auto", g[0] != seed, g[0]))
    checks = [(g, _checks(curves, groups[g])) for g in order]
    result, sentences = {}, []
    for claim in CLAIMS:
        judged = [(g, c[claim]) for g, c in checks if c[claim]]
        result[claim] = _claim(judged) if judged else None
        if judged:
            sentences += _claim_sentences(claim, judged)
        elif claim != "plain_vs_residual":
            sentences.append(_sentence(_TITLES[claim], None))
    result["seeds"] = [c for c in (_twin_check(curves, *p) for p in _twins(runs, "seed")) if c]
    result["precision"] = [c for c in (_twin_check(curves, *p)
                                       for p in _twins(runs, "precision")) if c]
    sentences += [_twin_sentence(c, what="Seed to seed") for c in result["seeds"]]
    for c in result["precision"]:
        policy = (curves[c["reference"]].get("precision") or {}).get("policy", "auto")
        sentences.append(_twin_sentence(c, what=f"{policy} against float32"))
    decided = [result[c]["reproduced"] for c in ("degradation", "residual")
               if result[c] and result[c]["reproduced"] is not None]
    if not decided:
        sentences.append("Neither of Fig. 6's two claims could be judged in this run.")
    elif len(decided) == 1:
        sentences.append(f"The one Fig. 6 claim judged {'holds' if decided[0] else 'fails'} "
                         f"in this run.")
    elif all(decided):
        sentences.append("Both of Fig. 6's claims hold in this run.")
    elif any(decided):
        sentences.append("One of Fig. 6's two claims holds in this run, the other does not.")
    else:
        sentences.append("Neither of Fig. 6's two claims holds in this run.")
    paired = any(c and c.get("train_gap") for c in (result[k] for k in CLAIMS))
    seeds = sorted({r.seed for r in runs.values()})
    if num_train:
        sentences.append(
            ("One seed only" if len(seeds) == 1 else
             "Seeds " + " and ".join(map(str, seeds)))
            + f"; one training image is {100 / num_train:.3f} points of training "
            f"error, so differences of a few images can be chance: "
            + (f"a gap counts only when the 95% interval of the paired difference excludes 0 "
               f"({statistics.INTERVAL_METHOD}, on the same {num_train:,} training"
               + (f" and {num_test:,} test" if num_test else "") + " images for every net)."
               if paired else "no per-image results were kept, so no gap's noise was tested."))
    return {**result, "text": " ".join(sentences)}


# ---------------------------------------------------------------- outputs


CSV_COLUMNS = ("model", "epoch", "train_error", "train_error_running", "test_error", "loss",
               "lr", "seconds")


def write_curves(curves, run_dir):
    """Writes `curves.json` and `curves.csv` (one row per net and epoch)."""
    with open(os.path.join(run_dir, "curves.json"), "w") as f:
        json.dump(curves, f, indent=1)
    with open(os.path.join(run_dir, "curves.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for name, c in curves.items():
            for i in range(len(c["epoch"])):
                writer.writerow([name] + [c[k][i] for k in CSV_COLUMNS[1:]])


def summarize(curves, *, dataset, num_train, num_test, config, seed, wall_seconds,
              train_subset=None):
    """The summary.json dict: final errors per net, the paper's, the verdict.

    `seed` is the experiment's (`run`'s); `config` the first net's, whose
    recipe every net shares.
    """
    nets = []
    for label, c in curves.items():
        r = Run.parse(label, seed=seed)
        nets.append({
            "run": label, "model": r.model, "seed": r.seed, "residual": c["residual"],
            "depth": c["depth"], "params": c["params"], "epochs": len(c["epoch"]),
            "train_error": c["train_error"][-1] if c["train_error"] else None,
            "test_error": c["test_error"][-1] if c["test_error"] else None,
            "paper_test_error": (paper.CIFAR10_TEST_ERROR.get(r.model)
                                 if dataset == "cifar10" else None),
            "seconds": c["seconds"][-1] if c["seconds"] else None,
            "diverged_at": c["diverged_at"],
            "precision": c.get("precision"),
        })
    return {
        "experiment": "degradation (arXiv 1512.03385, sec. 4.2, Fig. 6)",
        "dataset": dataset, "num_train": num_train, "num_test": num_test,
        "train_subset": train_subset, "models": list(curves),
        "recipe": recipe(config), "seed": seed,
        "lr_decay_epochs": list(config.train.lr_decay_epochs),
        "warmup_epochs": config.train.warmup_epochs,
        "training_error": "whole training split, not augmented, inference mode, after "
                          "each epoch",
        "nets": nets,
        # The rule the verdict's gaps are judged by (a summary without it predates it).
        "noise_test": f"paired: {statistics.INTERVAL_METHOD}; {statistics.TEST_METHOD}",
        "verdict": verdict(curves, seed=seed, num_train=num_train, num_test=num_test),
        "wall_seconds": round(wall_seconds, 1),
        "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
    }


def results_table(summary):
    """The Markdown table of final errors, one row per net, from summary.json."""
    from report.markdown import cell, md_table

    paper_column = summary["dataset"] == "cifar10"
    headers = ["net", "shortcuts", "layers", "params", "epochs", "training error %",
               "test error %", *(["paper test error % (Table 6)"] if paper_column else []),
               "seconds"]
    rows = [[net.get("run", net["model"]), "identity (A)" if net["residual"] else "none (plain)",
             net["depth"], cell(net["params"], ","), net["epochs"],
             cell(net["train_error"], ".2f"), cell(net["test_error"], ".2f"),
             *([cell(net["paper_test_error"], ".2f")] if paper_column else []),
             cell(net["seconds"], ".0f")]
            for net in summary["nets"]]
    return md_table(headers, rows, align="llrrrrr" + "r" * paper_column + "r")


def schedule_words(summary):
    """The learning-rate schedule of a summary.json in words."""
    r = summary["recipe"]
    steps, epochs = r.get("warmup_steps", 0), summary["warmup_epochs"]
    length = f"{steps} steps" if steps else f"{epochs:g} epoch{'s' if epochs != 1 else ''}"
    # Summaries from before train.warmup_shape held the tenth on the step schedule.
    shape = r.get("warmup_shape", "linear" if r["schedule"] == "cosine" else "constant")
    if r["schedule"] == "cosine":
        return (f"linear warmup from a tenth over {length}, then cosine decay"
                if steps or epochs else "cosine decay")
    parts = []
    if steps or epochs:
        parts.append(f"warmup rising linearly from a tenth over {length}" if shape == "linear"
                     else f"warmup at a tenth for {length}")
    if summary["lr_decay_epochs"]:
        parts.append("divided by 10 after epochs "
                     + " and ".join(f"{e:g}" for e in summary["lr_decay_epochs"]))
    return ", ".join(parts) or "constant"


def _seed_words(summary):
    seeds = sorted({n.get("seed", summary["seed"]) for n in summary["nets"]})
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    return (f"seed {summary['seed']} (the @seedN rows: seed N; "
            f"seeds {', '.join(map(str, seeds))} in all)")


def _precision_words(summary):
    """`, trained in mixed_bfloat16 (CPU with AVX512-BF16), the @float32 rows in float32`;
    nothing for older runs."""
    chosen = {(n["precision"]["policy"], n["precision"]["reason"])
              for n in summary["nets"] if n.get("precision")
              and not n.get("run", "").endswith("@float32")}
    tagged = any(n.get("run", "").endswith("@float32") for n in summary["nets"])
    return ("".join(f", trained in {policy} ({reason})" for policy, reason in sorted(chosen))
            + (", the @float32 rows in float32" if tagged else ""))


def render_results(summary):
    """results.md from summary.json: the table of final errors and the verdict."""
    paper_column = summary["dataset"] == "cifar10"
    r = summary["recipe"]
    lines = [
        f"# Degradation on {summary['dataset']} (paper Fig. 6)", "",
        f"{summary['num_train']:,} training and {summary['num_test']:,} test images; every "
        f"net: {r['epochs']} epochs, batch {r['batch_size']}, SGD momentum {r['momentum']}, "
        f"lr {r['learning_rate']:g} ({schedule_words(summary)}), weight decay "
        f"{r['weight_decay']:g}, augmentation {'on' if r['augment'] else 'off'}, "
        f"{_seed_words(summary)}{_precision_words(summary)}. Training error: "
        f"{summary['training_error']}. Whole run "
        f"{summary['wall_seconds']:.0f} s on {summary['machine']}.", "",
    ]
    lines.append(results_table(summary))
    diverged = [n for n in summary["nets"] if n["diverged_at"]]
    for n in diverged:
        lines.append(f"\n{n.get('run', n['model'])} diverged (NaN loss) at epoch "
                     f"{n['diverged_at'][0]}, step {n['diverged_at'][1]}; its row is its last "
                     f"finite epoch.")
    if paper_column:
        lines += ["", "The paper reports the plain nets' errors only as curves (Fig. 6), so "
                      "their paper column is empty."]
    lines += ["", "## Verdict", "", summary["verdict"]["text"], "",
              "![training and test error of each run](degradation.png)", ""]
    return "\n".join(lines)


def _run_label(c, residual):
    precision = "bfloat16" if "bfloat16" in ((c.get("precision") or {}).get("policy") or "") \
        else "float32"
    return f"{'ResNet' if residual else 'plain'}-{c['depth']}, seed {c['seed']}, {precision}", \
        precision


def plot(curves, path, *, title):
    """degradation.png in the layout of paper Fig. 6, every run told apart.

    One column per claim (plain nets, ResNets), training error above and test
    error below; one colour per depth, a solid line per float32 run and a
    dotted one per bfloat16 run, each named in the legend by net, seed and
    precision; the mean over a depth's float32 seeds bold, where it has two
    or more.
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    depths = sorted({c["depth"] for c in curves.values()})
    palette = ["tab:orange", "tab:blue", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    color = {d: palette[i % len(palette)] for i, d in enumerate(depths)}
    style = {"float32": "-", "bfloat16": ":"}
    fig = Figure(figsize=(12, 8.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2, sharey="row", sharex=True)
    for column, (residual, heading) in enumerate(((False, "plain nets"), (True, "ResNets"))):
        runs = sorted((c for c in curves.values() if c["residual"] == residual and c["epoch"]),
                      key=lambda c: (c["depth"], c["seed"], _run_label(c, residual)[1]))
        for row, key in enumerate(("train_error", "test_error")):
            ax = axes[row][column]
            for c in runs:
                label, precision = _run_label(c, residual)
                ax.plot(c["epoch"], c[key], color=color[c["depth"]], lw=0.8, alpha=0.8,
                        ls=style[precision], label=label)
            for depth in sorted({c["depth"] for c in runs}):
                seeds = [c[key] for c in runs if c["depth"] == depth
                         and _run_label(c, residual)[1] == "float32"
                         and len(c[key]) == len(runs[0]["epoch"])]
                if len(seeds) >= 2:
                    ax.plot(runs[0]["epoch"], np.mean(seeds, axis=0), color=color[depth],
                            lw=2.6, label=f"{'ResNet' if residual else 'plain'}-{depth}, "
                                          f"mean of {len(seeds)} float32 seeds")
            ax.set(title=f"{heading}: {'training' if row == 0 else 'test'} error")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6.5, ncol=1)
        axes[1][column].set_xlabel("epoch")
    for row, key in enumerate(("train_error", "test_error")):
        late = [e for c in curves.values() for e in c[key][len(c[key]) // 4:]]
        # Zoom on the later epochs, where the nets separate; the first epochs'
        # errors near 90% would flatten every difference that matters.
        top = min(100.0, 1.15 * max(late)) if late and max(late) > 0 else 1.0
        axes[row][0].set_ylim(0, max(top, 1.0))
        axes[row][0].set_ylabel("error (%)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


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


def run(models, *, dataset_name, out, data_dir=None, seed=0, epochs=None, batch_size=None,
        learning_rate=None, steps_per_epoch=None, train_subset=None):
    """Trains each net with the dataset's preset and writes every output into `out`.

    A net whose curves an earlier run of the same recipe left in `out` is not
    trained again: a killed experiment resumes at the net it was training, and
    a finished one re-run only re-writes its summary.

    Args:
        models: `Run` labels of CIFAR-style nets, e.g. ("plain20", "resnet20",
            "resnet20@seed1", "resnet20@float32").
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
    runs = [Run.parse(m, seed=seed) for m in models]
    configs = {r.label: net_config(dataset_name, model=r.model, data_dir=data_dir, seed=r.seed,
                                   precision=r.precision, epochs=epochs, batch_size=batch_size,
                                   learning_rate=learning_rate, steps_per_epoch=steps_per_epoch)
               for r in runs}
    shared = configs[runs[0].label]
    dataset = load_training_subset(dataset_name, data_dir=data_dir, train_subset=train_subset,
                                   seed=seed)
    os.makedirs(out, exist_ok=True)
    setup = {"models": list(models), "dataset": dataset_name, "seed": seed,
             "train_subset": train_subset, "recipe": recipe(shared),
             "train_configs": {label: config_lib.to_dict(c) for label, c in configs.items()}}
    curves = _earlier_curves(out, setup)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(setup, f, indent=2)
    logger.info("degradation on %s: %s; %d epochs each; outputs in %s", dataset_name,
                ", ".join(models), recipe(shared)["epochs"], out)
    arrays = evaluation_arrays(dataset) if len(curves) < len(runs) else None
    for r in runs:
        if r.label in curves:
            logger.info("%-9s kept from the earlier run in %s", r.label, out)
            continue
        curves[r.label] = {**train_net(configs[r.label], dataset, label=r.label, arrays=arrays,
                                       clock=start),
                           "model": r.model, "seed": r.seed, "precision_setting": r.precision}
        write_curves(curves, out)  # after each net, so a killed run keeps what it measured
    curves = {r.label: curves[r.label] for r in runs}
    plot(curves, os.path.join(out, "degradation.png"),
         title=f"{dataset_name}: training and test error of every run (solid float32, dotted "
               f"bfloat16; bold the mean over float32 seeds)")
    summary = summarize(curves, dataset=dataset_name, num_train=dataset.num_train,
                        num_test=dataset.num_test, config=shared, seed=seed,
                        wall_seconds=sum(c["seconds"][-1] for c in curves.values()
                                         if c["seconds"]),
                        train_subset=dataset.num_train if train_subset else None)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(render_results(summary))
    logger.info("%s", summary["verdict"]["text"])
    logger.info("done in %.0f s; outputs in %s", time.time() - start, out)
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
        name = Run.parse(label, seed=0).model  # unknown tags: ValueError naming them
        spec = get_spec(name)  # unknown names: ValueError listing the valid ones
        if spec.stem != "cifar":
            raise ValueError(f"{name} is an ImageNet net; this experiment trains the 32x32 "
                             f"CIFAR nets, plainN and resnetN with N = 20, 32, 44, 56, 110 "
                             f"(e.g. --models {','.join(DEFAULT_MODELS)}).")
    if len(set(labels)) != len(labels):
        raise ValueError(f"--models lists a net twice: {','.join(labels)}.")


def main(argv=None) -> int:
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
    args = parser.parse_args(argv)
    from job import stages
    from rundir.progress import show_progress
    show_progress()

    def body():
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

    return stages.command_line(body)

if __name__ == "__main__":
    sys.exit(main())
