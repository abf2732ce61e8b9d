"""The `export` stage of train.py: every TFLite variant of a run's models.

`export_run` converts the run's float and QAT models into the configured
variants under the run directory's `export/` and lists them in its manifest.
"""

import json
import os

from export import tflite
from quantization.finetune import load_float_model, load_run_qat_model

EXPORT_DIR = "export"
MANIFEST = "manifest.json"


def _manifest_path(run_dir):
    return os.path.join(run_dir, EXPORT_DIR, MANIFEST)


def export_run(config, run_dir, dataset) -> dict:
    """Converts the run's float (and QAT) model to every configured variant.

    Returns:
        dict variant -> path of the `.tflite` file (also written as
        export/manifest.json).
    """
    cfg = config.export
    tflite.check_variants(cfg.variants)  # before the models load
    model = load_float_model(run_dir)
    qat_model = load_run_qat_model(run_dir) if "int8_qat" in cfg.variants else None
    calibration = dataset.calibration_images(min(cfg.calibration_size, dataset.num_train),
                                             seed=config.train.seed)
    out_dir = os.path.join(run_dir, EXPORT_DIR)
    paths = tflite.export_variants(model, out_dir=out_dir, variants=cfg.variants,
                                   qat_model=qat_model, calibration_images=calibration,
                                   io_dtype=cfg.io_dtype)
    with open(_manifest_path(run_dir), "w") as f:
        json.dump({v: os.path.basename(p) for v, p in paths.items()}, f, indent=2)
    return paths
