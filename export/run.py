"""The `export` stage of train.py: every TFLite variant of a run's models.

`export_run` converts the run's float and QAT models into the configured
variants under the run directory's `export/`, gives each file its classifier
metadata and labels (export/metadata.py) and lists them in its manifest.
"""

import os

from export import metadata, tflite
from export.variants import CALIBRATION_SIZE
from quantization.qat import quantize_scope
from rundir.models import load_float_model, load_qat_model


def calibration_set(dataset, *, size=CALIBRATION_SIZE, seed=0):
    """The run's calibration images: `size` training images (all when fewer), drawn by `seed`.

    The one draw of them: QAT starts its ranges on them, int8 calibrates on
    them, the report diagnoses int8 on them.

    Returns:
        np.ndarray float32 `(N, H, W, 3)` in [0, 255].
    """
    return dataset.calibration_images(min(size, dataset.num_train), seed=seed)


def export_run(run, dataset, *, export_cfg, calibration, allow_unsafe=False) -> dict:
    """Converts the run's float (and QAT) model to every configured variant.

    Args:
        run: a `rundir.RunDir` with a trained model.
        dataset: the run's `datasets.Dataset` (class names).
        export_cfg: the job's `export` section (`job.config.ExportConfig`).
        calibration: the run's `calibration_set`.
        allow_unsafe: bool, as `rundir.model_files.load_model`.

    Returns:
        dict variant -> path of the `.tflite` file, carrying TFLite metadata
        and `labels.txt` (the dataset's class names; the metadata's version
        is the run directory's name), also written, as file names, to the
        run's manifest.
    """
    cfg = export_cfg
    model = load_float_model(run, allow_unsafe=allow_unsafe)
    qat_model = (load_qat_model(run, scope=quantize_scope, allow_unsafe=allow_unsafe)
                 if "int8_qat" in cfg.variants else None)
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
