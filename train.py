"""The whole job: train a ResNet, fine-tune it quantization-aware, export TFLite, report.

    python train.py                                  # digits, resnet20, all stages, ~3 min on 2 CPU cores
    python train.py --stages train --train.epochs 5  # only float training, shorter
    python train.py --preset cifar10-paper --data.data_dir ~/cifar-10-python.tar.gz
    python train.py --resume runs/resnet20-digits-20261127-120000   # continue a killed run
    python train.py --stages export,report --run-dir runs/X         # redo later stages of a run
    python train.py --help                           # every configuration key with its default

Stages run in order (train, qat, export, report); each reads what the earlier
ones left in the run directory. The resolved configuration is `config.json`.
"""

import argparse
import json
import os
import sys
import time

from training import config as config_lib

RUN_STATE = "state.json"


# ---- stages: each takes (config, run_dir, dataset) and returns a summary dict ----

def stage_train(config, run_dir, dataset):
    from training.loop import train
    result = train(config, run_dir, dataset)
    return {"test top-1": result["test_top1"], "images/s": round(result["images_per_second"] or 0)}


def stage_qat(config, run_dir, dataset):
    from quantization.finetune import fine_tune
    result = fine_tune(config, run_dir, dataset)
    return {"qat test top-1": result["test_top1"]}


def stage_export(config, run_dir, dataset):
    from export.run import export_run
    paths = export_run(config, run_dir, dataset)
    return {"files": len(paths)}


def stage_report(config, run_dir, dataset):
    from report.run import report_run
    from report.render import render_table
    report = report_run(config, run_dir, dataset)
    print(render_table(report))
    return {"report": os.path.join(run_dir, "report.md")}


STAGE_FUNCTIONS = {"train": stage_train, "qat": stage_qat, "export": stage_export,
                   "report": stage_report}
assert tuple(STAGE_FUNCTIONS) == config_lib.STAGES


# ---- command line ----

def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=None,
                        help=f"named recipe: {', '.join(config_lib.PRESETS)} (default digits)")
    parser.add_argument("--config", help="JSON or YAML file of configuration keys")
    parser.add_argument("--run-dir", help="run directory (default runs/<model>-<dataset>-<time>)")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its last checkpoint")
    parser.add_argument("--stages", help=f"comma-separated subset of {','.join(config_lib.STAGES)}")
    defaults = config_lib.to_dict(config_lib.Config())
    for key in config_lib.all_keys():
        if key in ("preset", "stages"):
            continue
        section, name = key.split(".")
        default = defaults[section][name]
        if isinstance(default, (list, tuple)):
            default = ",".join(str(v) for v in default)
        parser.add_argument(f"--{key}", dest=key, default=argparse.SUPPRESS, metavar="V",
                            help=f"default: {default}")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if "." in k}
    if args.stages:
        overrides["stages"] = args.stages
    return args, overrides


def resolve_run(args, overrides):
    """Returns (config, run_dir): a new run's, or an existing run's with overrides applied.

    An existing run (`--resume DIR`, or `--run-dir DIR` holding a config.json)
    keeps its model and dataset: changing them is an error, not a silent mix.
    """
    run_dir = args.resume or args.run_dir
    saved_path = os.path.join(run_dir, "config.json") if run_dir else None
    if args.resume and not os.path.exists(saved_path):
        raise ValueError(f"--resume {run_dir}: no config.json there, so it is not a run "
                         f"directory of train.py. Start a new run with --run-dir.")
    if not saved_path or not os.path.exists(saved_path):
        config = config_lib.resolve(args.preset or "digits", file=args.config,
                                    overrides=overrides)
        return config, run_dir or os.path.join("runs", f"{config.model.name}-"
                                               f"{config.data.dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
    if args.preset or args.config:
        raise ValueError(f"{run_dir} is an existing run; --preset and --config apply only to "
                         f"new runs. Override single keys instead (e.g. --qat.epochs 2).")
    with open(saved_path) as f:
        saved = config_lib.from_dict(json.load(f))
    config = config_lib.apply_overrides(saved, overrides)
    changed = [f"{section}.{key}" for section, key in (
        ("model", "name"), ("model", "variant"), ("model", "shortcut"), ("data", "dataset"))
        if getattr(getattr(config, section), key) != getattr(getattr(saved, section), key)]
    if changed:
        key = changed[0]
        section, name = key.split(".")
        raise ValueError(
            f"{run_dir} holds a run of {key}={getattr(getattr(saved, section), name)!r}, not "
            f"{getattr(getattr(config, section), name)!r}: its checkpoints do not fit. Start a "
            f"new run (another --run-dir) for another model or dataset.")
    config_lib.validate(config)
    return config, run_dir


def _load_state(run_dir):
    path = os.path.join(run_dir, RUN_STATE)
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {"completed": []}


def run(config, run_dir, *, skip_completed=False):
    """Runs the configured stages in order, one progress line per stage."""
    from datasets import load_dataset
    from training.distribute import strategy_for

    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump(config_lib.to_dict(config), f, indent=2)
    state = _load_state(run_dir)
    print(f"run directory: {run_dir}", flush=True)
    start = time.time()
    strategy_for(config.train)  # before any other TensorFlow op (multi-worker, logical CPUs)
    dataset = load_dataset(config.data.dataset, data_dir=config.data.data_dir,
                           image_size=config.data.image_size, val_split=config.data.val_split,
                           seed=config.train.seed)
    summaries, timing = {}, {}
    for stage in config_lib.STAGES:
        if stage not in config.stages:
            continue
        if skip_completed and stage in state["completed"]:
            print(f"[{stage}] already done in this run, skipped", flush=True)
            continue
        print(f"[{stage}] started", flush=True)
        stage_start = time.time()
        summaries[stage] = STAGE_FUNCTIONS[stage](config, run_dir, dataset)
        state["completed"] = sorted(set(state["completed"]) | {stage},
                                    key=config_lib.STAGES.index)
        with open(os.path.join(run_dir, RUN_STATE), "w") as f:
            json.dump(state, f)
        timing[stage] = round(time.time() - stage_start, 1)
        details = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in summaries[stage].items())
        print(f"[{stage}] done in {time.time() - stage_start:.1f} s: {details}", flush=True)
    total = time.time() - start
    with open(os.path.join(run_dir, "timing.json"), "w") as f:
        json.dump({"stages": timing, "total_seconds": round(total, 1)}, f, indent=2)
    print(f"all stages done in {total:.1f} s; outputs in {run_dir}", flush=True)
    return summaries


def main(argv=None) -> int:
    args, overrides = parse_args(argv)
    from training.loop import TrainingDiverged
    try:
        config, run_dir = resolve_run(args, overrides)
        run(config, run_dir, skip_completed=bool(args.resume) and not args.stages)
    except (ValueError, FileNotFoundError, TrainingDiverged) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
