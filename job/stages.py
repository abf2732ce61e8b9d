"""The whole job as stages over one run directory: train, qat, export, report, bundle.

`train.py` is its command line; experiments call `run` directly. Each stage
reads what the earlier ones left in the run directory (`rundir.RunDir`)
and prints one progress line when it starts and one when it is done.

    >>> config = job.config.resolve("digits", overrides={"train.epochs": 5})
    >>> stages.run(config, stages.new_run_dir(config))
"""

import dataclasses
import functools
import logging
import os
import resource
import sys
import time

from job import config as config_lib
from rundir import RunDir
from rundir.cluster import this_worker

logger = logging.getLogger(__name__)

# What a run's model and data are: changing one makes its checkpoints unusable.
_IDENTITY_KEYS = (("model", "name"), ("model", "variant"), ("model", "shortcut"),
                  ("model", "weights"), ("data", "dataset"))


@dataclasses.dataclass
class Job:
    """What a stage is given: the configuration, the run directory, the data, the opt-ins.

    Attributes:
        config: the resolved `job.config.Config`; each stage takes its sections.
        run: the `rundir.RunDir`.
        dataset: the loaded `datasets.Dataset`.
        allow_unsafe: bool, the command line's `--allow-unsafe-model-files`.
        worker: `rundir.cluster.Worker`, this process's task in a multi-worker
            job; None for a single process.
    """

    config: config_lib.Config
    run: RunDir
    dataset: object
    allow_unsafe: bool = False
    worker: object = None

    @functools.cached_property
    def calibration(self):
        """The run's calibration images, drawn once for QAT, export and the report."""
        from export.run import calibration_set
        return calibration_set(self.dataset, size=self.config.export.calibration_size,
                               seed=self.config.train.seed)


# ---- stages: each takes the `Job` and returns a summary dict ----

def stage_train(job):
    from training.loop import train
    config = job.config
    result = train(job.run, job.dataset, model_cfg=config.model, train_cfg=config.train,
                   augment=config.data.augment)
    top1 = result["test_top1"]  # None on a worker that is not the chief: the chief measures it
    return {"test top-1": "on the chief" if top1 is None else top1,
            "images/s": round(result["images_per_second"] or 0)}


def stage_qat(job):
    from quantization.finetune import fine_tune
    config = job.config
    # In a multi-worker job the chief fine-tunes alone, the others being done: on its own device.
    train_cfg = (config.train if job.worker is None
                 else dataclasses.replace(config.train, distribute="none"))
    result = fine_tune(job.run, job.dataset, qat_cfg=config.qat, train_cfg=train_cfg,
                       calibration=job.calibration, augment=config.data.augment,
                       allow_unsafe=job.allow_unsafe)
    return {"qat test top-1": result["test_top1"]}


def stage_export(job):
    from export.run import export_run
    paths = export_run(job.run, job.dataset, export_cfg=job.config.export,
                       calibration=job.calibration, allow_unsafe=job.allow_unsafe)
    return {"files": len(paths)}


def stage_report(job):
    from report.run import report_run
    from report.tables import render_table
    report = report_run(job.run, job.dataset, model_name=job.config.model.name,
                        report_cfg=job.config.report, calibration=job.calibration,
                        allow_unsafe=job.allow_unsafe)
    logger.info("%s", render_table(report))
    return {"report": job.run.report_markdown}


def stage_bundle(job):
    from export.bundles import bundle_run
    from report.decision_table import target_lines
    written = bundle_run(job.run, labels=list(job.dataset.class_names))
    # The answer of the whole job: one line per target, the file or why none.
    for line in target_lines(job.run.read_json(job.run.report_json)):
        logger.info("  %s", line)
    return {"bundles": len(written)}


STAGE_FUNCTIONS = {"train": stage_train, "qat": stage_qat, "export": stage_export,
                   "report": stage_report, "bundle": stage_bundle}


def command_line(body):
    """Runs a command's `body()`; an error the user can fix becomes one line and exit status 2.

    Errors the user can fix: `ValueError` (configuration, data, a model file),
    `OSError` (a file or folder that is missing, unwritable or on a full disk;
    the message names it) and `training.loop.TrainingDiverged`.

    Returns:
        int, the exit status: 0, or 2 after printing `error: <message>` to stderr.
    """
    from training.loop import TrainingDiverged

    try:
        body()
    except (ValueError, TrainingDiverged) as e:
        message = str(e)
    except OSError as e:  # FileNotFoundError, PermissionError, no space left, ...
        message = (f"{e.strerror}: {e.filename}" if e.filename and e.strerror
                   else e.strerror or str(e))
    else:
        return 0
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def new_run_dir(config, *, parent="runs"):
    """A fresh run directory name: `<parent>/<model>-<dataset>-<time>`."""
    # `tfds:NAME` without its colon, which scp and rsync read as a host.
    dataset = config.data.dataset.replace(":", "-")
    return RunDir(os.path.join(parent, f"{config.model.name}-{dataset}-"
                                       f"{time.strftime('%Y%m%d-%H%M%S')}"))


def existing_run(run, overrides):
    """The configuration saved in `run` with `overrides` applied, for continuing it.

    Raises:
        ValueError: the overrides change the run's model or dataset (its
            checkpoints would not fit), or a value is invalid.
    """
    saved = config_lib.from_dict(run.read_json(run.config))
    config = config_lib.apply_overrides(saved, overrides)
    for section, key in _IDENTITY_KEYS:
        before = getattr(getattr(saved, section), key)
        after = getattr(getattr(config, section), key)
        if before != after:
            raise ValueError(
                f"{run.root} holds a run of {section}.{key}={before!r}, not {after!r}: its "
                f"checkpoints do not fit. Start a new run (another --run-dir) for another "
                f"model or dataset.")
    config_lib.validate(config)
    return config


def _peak_rss_mb():
    """The process's peak resident memory so far, in MB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _completed(run):
    if not os.path.exists(run.state):
        return []
    completed = run.read_json(run.state).get("completed")
    if not isinstance(completed, list) or not set(completed) <= set(config_lib.STAGES):
        raise ValueError(f"{run.state} is corrupt: 'completed' should list stages of "
                         f"{', '.join(config_lib.STAGES)}, got {completed!r}.")
    return completed


def _needs(config, run, stage):
    """What `stage` reads from the run: (path, what it is, the stage that makes it, why)."""
    trained = (run.last_model, "trained model", "train", "")
    qat = (run.qat_model, "QAT model", "qat", "for export.variants int8_qat")
    int8_qat = "int8_qat" in config.export.variants
    return {"train": [],
            "qat": [trained],
            "export": [trained] + ([qat] if int8_qat else []),
            "report": [(run.manifest, "exported models", "export", ""), trained],
            "bundle": [(run.report_json, "report", "report", ""),
                       (run.manifest, "exported models", "export", "")]}[stage]


def check_inputs(config, run):
    """Refuses, before any stage runs, stages whose inputs no earlier stage will make.

    Everything missing is named in one message, with the stages that make it.

    Raises:
        ValueError: a configured stage needs a file that is not in the run
            directory and that no earlier configured stage writes.
    """
    stages = [s for s in config_lib.STAGES if s in config.stages]
    missing = {}
    for position, stage in enumerate(stages):
        for path, what, maker, why in _needs(config, run, stage):
            if not os.path.exists(path) and maker not in stages[:position]:
                missing.setdefault(path, (what, maker, why))
    if not missing:
        return
    makers = {maker for _, maker, _ in missing.values()}
    listed = ", no ".join(f"{what} ({run.relative(path)}: the {maker} stage makes it"
                          + (f", {why})" if why else ")")
                          for path, (what, maker, why) in missing.items())
    add = ",".join(s for s in config_lib.STAGES if s in config.stages or s in makers)
    message = (f"Nothing will make what stages={','.join(config.stages)} needs: {run.root} has "
               f"no {listed}. Add {'them' if len(makers) > 1 else 'it'} (--stages {add})")
    others = ",".join(v for v in config.export.variants if v != "int8_qat")
    if makers == {"qat"} and others:
        message += f" or leave int8_qat out (--export.variants {others})"
    raise ValueError(message + ".")


def run(config, run_dir, *, skip_completed=False, allow_unsafe=False):
    """Runs the configured stages in order, one progress line per stage.

    Args:
        config: a resolved `job.config.Config`.
        run_dir: a `RunDir` or a folder path (created if missing).
        skip_completed: bool, skip stages that `state.json` lists as done
            (continuing a killed run).
        allow_unsafe: bool, also load model files that can run code
            (`rundir.model_files`); only for files the user trusts.

    Returns:
        dict {stage: its summary dict}.

    Raises:
        ValueError, FileNotFoundError: bad data or configuration, or a stage's
            input missing; `training.loop.TrainingDiverged`.
        OSError: the run directory is in use by another process or job, or
            cannot be written; `training.distribute.WorkerLost` (a worker of
            the multi-worker job was lost).
    """
    run_dir = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    check_inputs(config, run_dir)
    worker = this_worker(config.train.distribute)
    with run_dir.locked(worker=worker):
        return _run_stages(config, run_dir, worker=worker, skip_completed=skip_completed,
                           allow_unsafe=allow_unsafe)


def _run_stages(config, run_dir, *, worker, skip_completed, allow_unsafe):
    from datasets import load_dataset
    from training.distribute import strategy_for

    # In a multi-worker job every worker trains; the chief alone writes the run's files
    # and runs the later stages (README, "Training on a cluster").
    chief = worker is None or worker.is_chief
    completed = _completed(run_dir)
    if chief:
        run_dir.write_json(run_dir.config, config_lib.to_dict(config))
    logger.info("run directory: %s", run_dir.root)
    if not chief:
        logger.info("%s of a %d-worker job: trains with the others; the chief, %s, writes the "
                    "run's files", worker.name, worker.num_workers, worker.chief.describe())
    start = time.time()
    strategy_for(config.train)  # before any other TensorFlow op (multi-worker, logical CPUs)
    dataset = load_dataset(config.data.dataset, data_dir=config.data.data_dir,
                           image_size=config.data.image_size,
                           augmentation=config.data.augmentation,
                           val_split=config.data.val_split, seed=config.train.seed)
    job = Job(config, run_dir, dataset, allow_unsafe=allow_unsafe, worker=worker)
    summaries, timing, peak_rss = {}, {}, {}
    for stage in config_lib.STAGES:
        if stage not in config.stages:
            continue
        if skip_completed and stage in completed:
            logger.info("[%s] already done in this run, skipped", stage)
            continue
        if not chief and stage != "train":
            logger.info("[%s] runs on the chief only", stage)
            continue
        logger.info("[%s] started", stage)
        stage_start = time.time()
        summaries[stage] = STAGE_FUNCTIONS[stage](job)
        completed = sorted(set(completed) | {stage}, key=config_lib.STAGES.index)
        if chief:
            run_dir.write_json(run_dir.state, {"completed": completed})
        timing[stage] = round(time.time() - stage_start, 1)
        peak_rss[stage] = _peak_rss_mb()
        details = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in summaries[stage].items())
        logger.info("[%s] done in %.1f s: %s", stage, time.time() - stage_start, details)
    total = time.time() - start
    if not chief:
        logger.info("%s done in %.1f s; the chief writes the outputs in %s", worker.name, total,
                    run_dir.root)
        return summaries
    # A later invocation (--resume, --stages) replaces the stages it ran and keeps the others.
    # Peak memory is the process's so far: each stage's figure includes the earlier ones.
    before = run_dir.read_json(run_dir.timing) if os.path.exists(run_dir.timing) else {}
    timing = {**before.get("stages", {}), **timing}
    peak_rss = {**before.get("peak_rss_mb", {}), **peak_rss}
    run_dir.write_json(run_dir.timing, {
        "stages": {s: timing[s] for s in config_lib.STAGES if s in timing},
        "total_seconds": round(sum(timing.values()), 1),
        "peak_rss_mb": {s: peak_rss[s] for s in config_lib.STAGES if s in peak_rss}})
    logger.info("all stages done in %.1f s; outputs in %s", total, run_dir.root)
    return summaries
