"""The option-A shortcut as a 1x1 max-pool (before) against a fixed 1x1 conv (now), paired.

    python -m benchmarks.option_a_shortcut --old-model runs/fashion_mnist/last.keras \
        --dataset fashion_mnist --out benchmarks/results/option_a_shortcut.json

`--old-model` is a CIFAR-net `.keras` trained before the change (its shortcut
a `MaxPooling2D` + `ZeroPadding2D`). Its weights load by name into the same
net built now; both convert to float32 and int8 with the same calibration
images and run over the whole test split. Writes top-1, agreement between the
two files of a variant, XNNPACK placement and single-thread latency (timed in
turns) as JSON.
"""

import argparse
import json
import os
import sys
import tempfile

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old-model", required=True)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    from datasets import load_dataset
    from export import runtime, tflite
    from resnet_keras import build_model, load_weights
    from rundir import model_files

    old = model_files.load_model(args.old_model)
    new = build_model(old.name, input_shape=old.input_shape[1:],
                      classes=old.output_shape[-1])
    dataset = load_dataset(args.dataset)
    images, labels = dataset.test_arrays()
    calibration = dataset.calibration_images(256, seed=0)
    result = {"old_model": args.old_model, "dataset": args.dataset, "num_test": len(labels),
              "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        # By layer name, every layer checked; the old file lacks only the subsample convs.
        old.save_weights(os.path.join(tmp, "old.h5"))
        load_weights(new, os.path.join(tmp, "old.h5"))
        for variant in ("float32", "int8"):
            paths, scores = {}, {}
            for graph, model in (("max_pool", old), ("subsample_conv", new)):
                paths[graph] = os.path.join(tmp, f"{graph}_{variant}.tflite")
                with open(paths[graph], "wb") as f:
                    f.write(tflite.convert(model, variant, calibration_images=calibration))
                scores[graph] = runtime.predict_tflite(paths[graph], images)
            latency = runtime.measure_latency(paths, num_threads=1, runs=200)
            result["variants"][variant] = {graph: {
                "top1": float(np.mean(scores[graph].argmax(-1) == labels)),
                "xnnpack": runtime.xnnpack_placement(paths[graph]),
                "latency_1_thread_ms": latency[graph],
            } for graph in paths}
            result["variants"][variant]["agreement"] = float(np.mean(
                scores["max_pool"].argmax(-1) == scores["subsample_conv"].argmax(-1)))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result["variants"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
