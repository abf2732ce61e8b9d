"""CIFAR-10 test error of ResNet-20..110 against the paper's Table 6 (arXiv 1512.03385, sec. 4.2).

    python -m experiments.cifar10_table --data-dir /data/cifar-10-python.tar.gz   # GPU, hours
    python -m experiments.cifar10_table --models resnet20,resnet56 --data-dir /data
    python -m experiments.cifar10_table --smoke --data-dir tiny/cifar-10-python.tar.gz

Each net trains with train.py's own machinery (`stages.run`) and its
`cifar10-paper` preset, stage `train` only, exactly as `python train.py --preset
cifar10-paper --model.name resnetN --stages train` would: 45k/5k split, batch
128, lr 0.1 / 10 at 32k and 48k iterations, 64k iterations, weight decay 1e-4.
ResNet-110 also gets the paper's warmup: lr 0.01 for about 400 iterations.

Each net's run directory is OUT/<model>/ (default OUT runs/cifar10_table-<time>);
test error = 1 - `test_top1` of its train_result.json, on the 10,000 official
test images. A rerun with the same --out reuses finished nets and resumes
unfinished ones from their last backup. Writes results.json, then results.md.

`--smoke` trains each net for 2 steps of 8 images to prove the
wiring on CPU, e.g. on a tiny archive: its numbers mean nothing.
"""

import argparse
import json
import logging
import os
import sys
import time

from experiments import paper

MODELS = tuple(paper.CIFAR10_TEST_ERROR)
# Paper sec. 4.2: "we use 0.01 to warm up the training until the training
# error is below 80% (about 400 iterations), and then go back to 0.1".
WARMUP_ITERATIONS = {"resnet110": 400}
PAPER_BATCH, PAPER_TRAIN_IMAGES = 128, 45_000
logger = logging.getLogger(__name__)
# A smoke run may use a tiny archive with fewer than the 5,000 images to hold out.
SMOKE_OVERRIDES = {"train.epochs": 1, "train.steps_per_epoch": 2, "train.batch_size": 8,
                   "train.save_every_steps": 1, "data.val_split": 0.1}


def net_config(model, *, data_dir, seed=0, smoke=False):
    """The resolved `cifar10-paper` configuration for `model`, stage `train`.

    Args:
        model: one of `MODELS` (any CIFAR registry name works).
        data_dir: the CIFAR-10 archive or its folder; None for the Keras cache.
        seed: training seed.
        smoke: a few steps on a tiny split instead of the paper's schedule.

    Returns:
        A validated `job.config.Config`.
    """
    from job import config as config_lib

    overrides = {"model.name": model, "data.data_dir": data_dir, "stages": "train",
                 "train.seed": seed}
    if model in WARMUP_ITERATIONS:
        # Epochs, so that the warmup spans the same images whatever the global batch.
        overrides["train.warmup_epochs"] = (WARMUP_ITERATIONS[model] * PAPER_BATCH
                                            / PAPER_TRAIN_IMAGES)
        overrides["train.warmup_shape"] = "constant"  # the paper's: 0.01, then 0.1
    if smoke:
        overrides.update(SMOKE_OVERRIDES)
    return config_lib.resolve("cifar10-paper", overrides=overrides)


def _comparable(saved, config):
    """Whether a run directory's config.json is this configuration (data_dir aside)."""
    from job import config as config_lib

    wanted = config_lib.to_dict(config)
    for d in (saved, wanted):
        d.get("data", {}).pop("data_dir", None)
    return json.loads(json.dumps(wanted)) == saved


def train_net(model, *, out, data_dir, seed=0, smoke=False):
    """Trains `model` in OUT/<model>/ unless a finished run of it is there.

    Returns:
        The run's train_result.json dict.

    Raises:
        ValueError: OUT/<model>/ holds a run of another configuration.
    """
    from job import stages
    from rundir import RunDir

    config = net_config(model, data_dir=data_dir, seed=seed, smoke=smoke)
    run = RunDir(os.path.join(out, model))
    if os.path.exists(run.config):
        if not _comparable(run.read_json(run.config), config):
            raise ValueError(f"{run.root} holds a run with another configuration; use "
                             f"another --out.")
        if os.path.exists(run.train_result):
            logger.info("[%s] finished earlier in %s; its result is reused", model, run.root)
            return run.read_json(run.train_result)
    stages.run(config, run)
    return run.read_json(run.train_result)


def table_rows(results):
    """Rows of the table from {model: train_result dict}: our error beside the paper's."""
    rows = []
    for model, result in results.items():
        ours = 100 * (1 - result["test_top1"])
        reference = paper.CIFAR10_TEST_ERROR.get(model)
        rows.append({
            "model": model, "test_error": ours, "paper_test_error": reference,
            "difference": None if reference is None else ours - reference,
            "epochs": result["epochs"], "steps_per_epoch": result["steps_per_epoch"],
            "global_batch": result["global_batch"], "seconds": result["seconds"],
        })
    return rows


def render_markdown(summary):
    """results.md from results.json."""
    from report.markdown import cell, md_table

    lines = ["# CIFAR-10 test error against the paper's Table 6", ""]
    if summary["smoke"]:
        lines += ["**Smoke run**: a few steps on a small split to check the wiring; these "
                  "errors say nothing about the nets.", ""]
    lines += [
        f"Recipe: train.py's `cifar10-paper` preset; test error on the "
        f"{summary['num_test']:,} test images; measured {summary['measured']}.", "",
        md_table(["net", "test error %", "paper test error %", "difference (points)", "epochs",
                  "steps/epoch", "batch", "seconds"],
                 [[r["model"], cell(r["test_error"], ".2f"), cell(r["paper_test_error"], ".2f"),
                   cell(r["difference"], "+.2f"), r["epochs"], r["steps_per_epoch"],
                   r["global_batch"], cell(r["seconds"], ".0f")] for r in summary["rows"]],
                 align="lrrrrrrr"),
    ]
    lines += ["", "Paper: single runs, except ResNet-110 (best of 5). Ours: one run each, "
                  "seed " + str(summary["seed"]) + ".", ""]
    return "\n".join(lines)


def run(models, *, out, data_dir=None, seed=0, smoke=False):
    """Trains each net and writes results.json and results.md into `out`.

    Raises:
        FileNotFoundError: no CIFAR-10 archive where it was looked for.
        ValueError: a malformed archive, an unknown model, a foreign run in `out`.
    """
    from datasets import load_dataset
    from training.distribute import strategy_for

    configs = [net_config(m, data_dir=data_dir, seed=seed, smoke=smoke) for m in models]
    strategy_for(configs[0].train)  # before any other TensorFlow op, as train.py does
    # Fails before any directory is made if the archive is missing or broken.
    num_test = load_dataset("cifar10", data_dir=data_dir,
                            val_split=configs[0].data.val_split, seed=seed).num_test
    os.makedirs(out, exist_ok=True)
    results = {}
    for model in models:
        results[model] = train_net(model, out=out, data_dir=data_dir, seed=seed, smoke=smoke)
    summary = {
        "experiment": "CIFAR-10 Table 6 (arXiv 1512.03385, sec. 4.2)",
        "smoke": smoke, "seed": seed, "num_test": num_test,
        "rows": table_rows(results),
        "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(render_markdown(summary))
    logger.info("%s", render_markdown(summary))
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated nets (default {','.join(MODELS)})")
    parser.add_argument("--data-dir", help="CIFAR-10 archive or its folder (default: Keras cache)")
    parser.add_argument("--out", help="output folder (default runs/cifar10_table-<time>)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true",
                        help="2 steps per net on a small split: checks the wiring only")
    args = parser.parse_args(argv)
    from job import stages
    from resnet_keras.registry import get_spec
    from rundir.progress import show_progress
    show_progress()

    def body():
        models = tuple(m.strip() for m in args.models.split(",") if m.strip())
        if not models:
            raise ValueError("--models is empty.")
        for model in models:
            if get_spec(model).stem != "cifar":  # unknown names: ValueError listing them
                raise ValueError(f"{model} is an ImageNet net; Table 6 has the CIFAR nets "
                                 f"{', '.join(MODELS)}.")
        out = args.out or os.path.join("runs",
                                       f"cifar10_table-{time.strftime('%Y%m%d-%H%M%S')}")
        run(models, out=out, data_dir=args.data_dir, seed=args.seed, smoke=args.smoke)

    return stages.command_line(body)

if __name__ == "__main__":
    sys.exit(main())
