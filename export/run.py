"""The `export` stage of train.py and of `python -m export`: every TFLite variant of a model.

`export_models` converts a float (and QAT) model into variants and gives each
file its classifier metadata and labels (export/metadata.py); `export_run`
does so for a run directory and lists the files in its manifest.
"""

import os

from export import metadata, tflite
from export.variants import CALIBRATION_SIZE
from quantization.qat import quantize_scope
from rundir.model_files import load_float_model, load_qat_model


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
    model = load_float_model(run, allow_unsafe=allow_unsafe)
    qat_model = (load_qat_model(run, scope=quantize_scope, allow_unsafe=allow_unsafe)
                 if "int8_qat" in export_cfg.variants else None)
    paths = export_models(model, qat_model=qat_model, out_dir=run.export_dir,
                          variants=export_cfg.variants, calibration=calibration,
                          io_dtype=export_cfg.io_dtype, labels=dataset.class_names,
                          version=os.path.basename(os.path.normpath(run.root)))
    run.write_json(run.manifest, {v: os.path.basename(p) for v, p in paths.items()})
    return paths


def export_models(model, *, qat_model=None, out_dir, variants, calibration, io_dtype, labels,
                  version):
    """Converts `model` (and `qat_model`) to `variants`, each file with its metadata.

    Args:
        model: the trained float model (its name names the files).
        qat_model: the fine-tuned QAT model, for `int8_qat`; else None.
        out_dir: str, the folder of the files (created if missing).
        variants: names from `export.variants.VARIANTS`.
        calibration: `calibration_set`'s images, for `int8` and `int16x8`; else None.
        io_dtype: str, from `export.variants.IO_DTYPES`.
        labels: the class names, written into each file as `labels.txt`.
        version: str, the metadata's model version.

    Returns:
        dict variant -> path of the `.tflite` file, in the order of `variants`.

    Raises:
        ValueError: as `export.tflite.export_variants`, before any file is written.
    """
    paths = tflite.export_variants(model, out_dir=out_dir, variants=variants,
                                   qat_model=qat_model, calibration_images=calibration,
                                   io_dtype=io_dtype)
    for path in paths.values():
        metadata.write(path, labels=labels, version=version)
    return paths


def load_manifest(run):
    """{variant: path} of the run's exported files.

    Raises:
        FileNotFoundError: the export stage has not run; the message says how to run it.
    """
    manifest = run.read_json(run.require(run.manifest, what="exported models",
                                         stage="export"))
    return {variant: run.exported_file(name) for variant, name in manifest.items()}
