"""Converts a saved model to `.tflite` variants and checks each on a test split.

    python -m export --model runs/x/last.keras --dataset digits
    python -m export --model runs/x/last.keras --qat-model runs/x/qat.keras \\
        --variants float32,int8,int8_qat --dataset digits --out runs/x/export

Every file carries TFLite metadata with the dataset's class names as
`labels.txt` (export/metadata.py), so MediaPipe Tasks' ImageClassifier loads it
with no options. Every file runs in LiteRT (export/runtime.py) on the dataset's whole test
split; the table gives its size, top-1 accuracy and top-1 agreement with the Keras model. The
float32 file must reproduce the Keras model (top-1 agreement of at least
`FLOAT32_MIN_AGREEMENT`), else the exit status is 1. The results are also
written as `export.json` next to the files. Errors print one line and exit 2.
The files are made by the export stage's own `export.run.export_models`, on
`export.run.calibration_set`'s images.
Models load through rundir/model_files.py: a whole `.keras` without `Lambda`
layers, unless `--allow-unsafe-model-files` (HDF5 runs code when loaded).
"""

import argparse
import os
import sys

# export.run is imported only after the arguments are checked: importing
# TensorFlow takes seconds, a typo in a path should not. The closed sets
# import no TensorFlow.
from export.variants import (
    CALIBRATED_VARIANTS,
    CALIBRATION_SIZE,
    VARIANTS,
    check_io_dtype,
    check_variants,
)
from rundir import model_files
from rundir.files import write_json
from rundir.progress import show_progress

_VARIANTS_HELP = ", ".join(VARIANTS)

# Float32 TFLite differs from Keras only by kernel rounding order; a lower
# agreement means the conversion changed the model.
FLOAT32_MIN_AGREEMENT = 0.997
RESULTS_FILE = "export.json"


def _parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="the trained float model (.keras)")
    parser.add_argument("--qat-model", help="the fine-tuned QAT model (.keras), for int8_qat")
    parser.add_argument("--variants", help=f"comma-separated, from {_VARIANTS_HELP}; default "
                        f"all (int8_qat only with --qat-model)")
    parser.add_argument("--dataset", required=True,
                        help="dataset whose test split checks the files, e.g. digits")
    parser.add_argument("--data-dir", help="data_dir for load_dataset (cifar, folder)")
    parser.add_argument("--out", help="output folder (default: the model's folder)")
    parser.add_argument("--calibration-size", type=int,
                        help="training images for int8 calibration (default "
                        f"{CALIBRATION_SIZE})")
    parser.add_argument("--allow-unsafe-model-files", action="store_true",
                        help="also load HDF5 models and models with Lambda layers, which run "
                        "code when loaded; only for files you trust")
    parser.add_argument("--io-dtype", default="uint8", help="integer variants' input/output "
                        "type: uint8 or int8 (default %(default)s)")
    return parser.parse_args(argv)


def _variants(args):
    if args.variants is None:
        return [v for v in VARIANTS if v != "int8_qat" or args.qat_model]
    variants = check_variants(v.strip() for v in args.variants.split(",") if v.strip())
    if "int8_qat" in variants and not args.qat_model:
        raise ValueError("--variants int8_qat needs --qat-model PATH (the fine-tuned QAT model).")
    return variants


def _check_args(args):
    for flag, path in (("--model", args.model), ("--qat-model", args.qat_model)):
        if path is not None and not os.path.isfile(path):
            raise FileNotFoundError(f"{flag} {path} does not exist.")
        if path is not None:
            model_files.check_model_file(path, allow_unsafe=args.allow_unsafe_model_files)
    if args.calibration_size is not None and args.calibration_size < 1:
        raise ValueError(f"--calibration-size must be positive, got {args.calibration_size}.")
    check_io_dtype(args.io_dtype)
    return _variants(args)


def _evaluate(model, paths, dataset):
    """(Keras float top-1, one row per file) on the dataset's whole test split."""
    from datasets.input_pipeline import array_batches
    from export import runtime

    images, labels = dataset.test_arrays()
    reference = model.predict(array_batches(images.astype("float32"), batch_size=64), verbose=0)
    keras_top1 = float((reference.argmax(-1) == labels).mean())
    rows = []
    for variant, path in paths.items():
        result = runtime.evaluate_tflite(path, images, labels, reference_predictions=reference)
        rows.append({"variant": variant, "file": os.path.basename(path),
                     "size_bytes": os.path.getsize(path), **result})
    return keras_top1, rows


def _print_table(rows, *, dataset, name, keras_top1):
    """Prints the table; returns the exit status (1: float32 does not reproduce Keras)."""
    print(f"\n{dataset.num_test} {name} test images; Keras float top-1 "
          f"{100 * keras_top1:.2f}%")
    print(f"{'variant':<10}{'size MB':>9}{'top-1 %':>9}{'agree %':>9}{'max |diff|':>12}")
    for row in rows:
        print(f"{row['variant']:<10}{row['size_bytes'] / 1e6:>9.3f}{100 * row['top1']:>9.2f}"
              f"{100 * row['agreement']:>9.2f}{row['max_abs_diff']:>12.2e}")
    float_row = next((row for row in rows if row["variant"] == "float32"), None)
    if float_row is None:
        return 0
    ok = float_row["agreement"] >= FLOAT32_MIN_AGREEMENT
    print(f"float32 vs Keras: max |diff| {float_row['max_abs_diff']:.2e}, top-1 agreement "
          f"{100 * float_row['agreement']:.2f}% (needs >= {100 * FLOAT32_MIN_AGREEMENT:.1f}%)"
          f": {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


def run(args):
    """Converts, evaluates and prints; returns the exit status."""
    variants = _check_args(args)
    from datasets import load_dataset
    from export.run import calibration_set, export_models
    from quantization.qat import load_qat_model

    unsafe = args.allow_unsafe_model_files
    model = model_files.load_model(args.model, allow_unsafe=unsafe)
    qat_model = (load_qat_model(args.qat_model, allow_unsafe=unsafe)
                 if "int8_qat" in variants else None)
    height = model.input_shape[1]
    dataset = load_dataset(args.dataset, data_dir=args.data_dir,
                           image_size=height if args.dataset == "folder" else None)
    if dataset.image_shape != tuple(model.input_shape[1:]):
        raise ValueError(f"{args.dataset} images are {dataset.image_shape}, the model takes "
                         f"{tuple(model.input_shape[1:])}.")
    calibration = (calibration_set(dataset, size=args.calibration_size or CALIBRATION_SIZE)
                   if any(v in CALIBRATED_VARIANTS for v in variants) else None)
    out_dir = args.out or os.path.dirname(os.path.abspath(args.model))
    # The metadata's version: the model file within its run, e.g. `resnet20-digits-x/last.keras`.
    version = os.path.relpath(args.model, os.path.dirname(os.path.dirname(
        os.path.abspath(args.model))))
    paths = export_models(model, qat_model=qat_model, out_dir=out_dir, variants=variants,
                          calibration=calibration, io_dtype=args.io_dtype,
                          labels=dataset.class_names, version=version)
    keras_top1, rows = _evaluate(model, paths, dataset)
    status = _print_table(rows, dataset=dataset, name=args.dataset, keras_top1=keras_top1)
    write_json(os.path.join(out_dir, RESULTS_FILE),
               {"model": model.name, "dataset": args.dataset, "num_test": dataset.num_test,
                "keras_top1": keras_top1, "io_dtype": args.io_dtype, "variants": rows})
    return status


def main(argv=None):
    args = _parse_args(argv)
    try:
        return run(args)
    except (ValueError, FileNotFoundError, OSError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    show_progress()
    sys.exit(main())
