"""The `export` stage of train.py: every TFLite variant of a run's models.

`export_run` converts the run's float and QAT models into the configured
variants under the run directory's `export/`, gives each file its classifier
metadata and labels (export/metadata.py) and lists them in its manifest.
"""

import os

from export import metadata, tflite
from quantization.finetune import load_float_model, load_run_qat_model


def export_run(config, run, dataset) -> dict:
    """Converts the run's float (and QAT) model to every configured variant.

    Args:
        config: a resolved `training.config.Config` (uses `export`).
        run: a `training.run_dir.RunDir` with a trained model.
        dataset: the run's `datasets.Dataset` (calibration images).

    Returns:
        dict variant -> path of the `.tflite` file, carrying TFLite metadata
        and `labels.txt` (the dataset's class names; the metadata's version
        is the run directory's name), also written, as file names, to the
        run's manifest.
    """
    cfg = config.export
    model = load_float_model(run)
    qat_model = load_run_qat_model(run) if "int8_qat" in cfg.variants else None
    calibration = dataset.calibration_images(min(cfg.calibration_size, dataset.num_train),
                                             seed=config.train.seed)
    paths = tflite.export_variants(model, out_dir=run.export_dir, variants=cfg.variants,
                                   qat_model=qat_model, calibration_images=calibration,
                                   io_dtype=cfg.io_dtype)
    for path in paths.values():
        metadata.write(path, labels=dataset.class_names,
                       version=os.path.basename(os.path.normpath(run.root)))
    run.write_json(run.manifest, {v: os.path.basename(p) for v, p in paths.items()})
    return paths


def load_manifest(run):
    """{variant: path} of the run's exported files.

    Raises:
        FileNotFoundError: the export stage has not run; the message says how to run it.
    """
    manifest = run.read_json(run.require(run.manifest, what="exported models",
                                         stage="export"))
    return {variant: run.exported_file(name) for variant, name in manifest.items()}
