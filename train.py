"""The whole job: train a ResNet, fine-tune it quantization-aware, export TFLite, report.

    python train.py                                  # digits, resnet20, all stages, 2 CPUs
    python train.py --stages train --train.epochs 5  # only float training, shorter
    python train.py --preset cifar10-paper --data.data_dir ~/cifar-10-python.tar.gz
    python train.py --resume runs/resnet20-digits-20261127-120000   # continue a killed run
    python train.py --stages export,report --run-dir runs/X         # redo later stages of a run
    python train.py --help                           # every configuration key with its default
    TF_CONFIG='{"cluster": ..., "task": ...}' python train.py --run-dir /shared/runs/X
                                    # one worker of a job (README, "Training on a cluster")

Stages run in order (train, qat, export, report; see job/stages.py); each reads
what the earlier ones left in the run directory. The resolved configuration is
`config.json`.
"""

import argparse
import os
import sys

from job import config as config_lib
from job import stages
from rundir import RunDir
from rundir.progress import show_progress


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
    parser.add_argument("--allow-unsafe-model-files", action="store_true",
                        help="also load HDF5 models and models with Lambda layers, which run "
                        "code when loaded; only for files you trust (README, 'Resuming')")
    parser.add_argument("--offline", action="store_true",
                        help="download nothing: weights and datasets must be cached or given "
                        "(the same as RESNET_KERAS_OFFLINE=1; README, 'Downloads')")
    defaults = config_lib.to_dict(config_lib.Config())
    for key in config_lib.all_keys():
        if key in ("preset", "stages"):
            continue
        section, name = key.split(".")
        default = defaults[section][name]
        if isinstance(default, (list, tuple)):
            default = ",".join(str(v) for v in default)
        parser.add_argument(f"--{key}", dest=key, default=argparse.SUPPRESS, metavar="V",
                            help=f"default: {default}" + (
                                f"; valid: {config_lib.RANGES[key].describe()}"
                                if key in config_lib.RANGES else ""))
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if "." in k}
    if args.stages:
        overrides["stages"] = args.stages
    return args, overrides


def resolve_run(args, overrides):
    """Returns (config, run): a new run's, or an existing run's with overrides applied.

    An existing run (`--resume DIR`, or `--run-dir DIR` holding a config.json)
    keeps its model and dataset: changing them is an error, not a silent mix.
    """
    folder = args.resume or args.run_dir
    run = RunDir(folder) if folder else None
    if args.resume and not os.path.exists(run.config):
        raise ValueError(f"--resume {folder}: no config.json there, so it is not a run "
                         f"directory of train.py. Start a new run with --run-dir.")
    if run is None or not os.path.exists(run.config):
        config = config_lib.resolve(args.preset or "digits", file=args.config,
                                    overrides=overrides)
        return config, run or stages.new_run_dir(config)
    if args.preset or args.config:
        # The same command again is the same run: a multi-worker job's later workers
        # find the config.json their chief has just written.
        config = config_lib.resolve(args.preset or "digits", file=args.config,
                                    overrides=overrides)
        if config == config_lib.from_dict(run.read_json(run.config)):
            return config, run
        raise ValueError(f"{folder} is an existing run; --preset and --config apply only to "
                         f"new runs. Override single keys instead (e.g. --qat.epochs 2).")
    return stages.existing_run(run, overrides), run


def main(argv=None) -> int:
    args, overrides = parse_args(argv)
    show_progress()
    if args.offline:
        # What resnet_keras.fetch reads (not imported here: it loads TensorFlow); the
        # environment also reaches the processes this one starts.
        os.environ["RESNET_KERAS_OFFLINE"] = "1"

    def body():
        config, run = resolve_run(args, overrides)
        # A resume never redoes a finished stage, --stages or not: `--run-dir` redoes one.
        stages.run(config, run, skip_completed=bool(args.resume),
                     allow_unsafe=args.allow_unsafe_model_files)

    return stages.command_line(body)


if __name__ == "__main__":
    sys.exit(main())
