"""oneDNN on against off: one train.py recipe and seed both ways, scored image by image.

    python -m experiments.onednn                               # digits, seeds 0-2
    python -m experiments.onednn --dataset fashion_mnist --epochs 3 --seeds 0,1

`resnet_keras.backend` turns TensorFlow's oneDNN kernels on where TensorFlow
leaves them off; this checks what that costs in accuracy and gives in speed.
Each run is `python train.py --stages train` in a process of its own, with
`TF_ENABLE_ONEDNN_OPTS` 1 or 0 (it must be set before TensorFlow loads), in
float32 (`--train.mixed_precision off`: without oneDNN bfloat16 is emulated),
in turns (seed 0 on then off, seed 1 off then on, ...). Then this process
scores every run's last model on the test split, and each seed's two runs
are compared image by image (report/statistics.py: Newcombe's interval,
McNemar's exact test). A re-run with the same `--out` keeps finished runs.

Writes `--out`/summary.json, then results.md rendered from it.
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = {"on": "1", "off": "0"}


def _train(run_dir, *, setting, dataset, seed, epochs, data_dir):
    """One train.py process (skipped where its train_result.json exists); returns that JSON."""
    from rundir import RunDir

    run = RunDir(run_dir)
    if not os.path.exists(run.train_result):
        command = [sys.executable, "train.py", "--stages", "train", "--data.dataset", dataset,
                   "--train.seed", str(seed), "--train.mixed_precision", "off",
                   "--run-dir", run_dir, *(["--train.epochs", str(epochs)] if epochs else []),
                   *(["--data.data_dir", data_dir] if data_dir else [])]
        start = time.perf_counter()
        print(f"  seed {seed}, oneDNN {setting}: {' '.join(command[1:])} ...", flush=True)
        with open(run_dir + ".log", "w") as log:
            done = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                  env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": SETTINGS[setting]})
        if done.returncode:
            raise RuntimeError(f"train.py failed (exit {done.returncode}); see {run_dir}.log")
        print(f"  seed {seed}, oneDNN {setting}: done in {time.perf_counter() - start:.0f} s",
              flush=True)
    return run.read_json(run.train_result)


def _test_correct(run_dir, test):
    """Whether the run's last model gets each test image right (0/1 per image)."""
    import numpy as np

    from datasets.input_pipeline import array_batches
    from rundir import RunDir
    from rundir.model_files import load_float_model

    images, labels = test
    model = load_float_model(RunDir(run_dir))
    scores = model.predict(array_batches(images, batch_size=256), verbose=0)
    return np.argmax(scores, axis=1) == labels


def run(*, dataset, seeds, epochs, out, data_dir=None):
    """Trains every (seed, setting) in turns, scores them, compares; returns summary.json's dict."""
    from datasets import load_dataset
    from experiments.degradation.train import evaluation_arrays
    from report import statistics

    os.makedirs(out, exist_ok=True)
    runs = {}
    for i, seed in enumerate(seeds):
        for setting in ("on", "off") if i % 2 == 0 else ("off", "on"):
            run_dir = os.path.join(out, f"seed{seed}-onednn-{setting}")
            runs[seed, setting] = (run_dir, _train(run_dir, setting=setting, dataset=dataset,
                                                   seed=seed, epochs=epochs, data_dir=data_dir))
    test = evaluation_arrays(load_dataset(dataset, data_dir=data_dir))["test"]
    rows, comparisons = [], []
    for seed in seeds:
        correct, rate = {}, {}
        for setting in ("on", "off"):
            run_dir, trained = runs[seed, setting]
            correct[setting] = _test_correct(run_dir, test)
            rate[setting] = trained["images_per_second"]
            rows.append({"seed": seed, "setting": setting, "onednn": trained["onednn"],
                         "seconds": trained["seconds"], "images_per_second": rate[setting],
                         "test_top1": float(correct[setting].mean())})
        comparisons.append({
            "seed": seed, "speedup": rate["on"] / rate["off"],
            **statistics.paired_difference(statistics.paired_counts(correct["off"],
                                                                     correct["on"]))})
    return {"dataset": dataset, "num_test": int(len(test[1])), "seeds": list(seeds),
            "epochs": runs[seeds[0], "on"][1]["epochs"], "precision": "float32",
            "runs": rows, "comparisons": comparisons,
            "noise_test": f"paired: {statistics.INTERVAL_METHOD}; {statistics.TEST_METHOD}"}


def render(summary) -> str:
    """results.md from summary.json."""
    from report.markdown import md_table

    runs = md_table(["seed", "oneDNN", "TensorFlow says", "seconds", "images/s", "test top-1 %"],
                    [[r["seed"], r["setting"], "on" if r["onednn"]["on"] else "off",
                      f"{r['seconds']:.1f}", f"{r['images_per_second']:,.0f}",
                      f"{100 * r['test_top1']:.2f}"] for r in summary["runs"]],
                    align="rllrrr")
    pairs = md_table(["seed", "images/s on / off", "top-1 on - off (points)", "95% interval",
                      "images only on gets right / only off", "McNemar p", "within the noise"],
                     [[c["seed"], f"{c['speedup']:.2f}", f"{c['difference_points']:+.2f}",
                       f"{c['interval_points'][0]:+.2f} .. {c['interval_points'][1]:+.2f}",
                       f"{c['variant_only']} / {c['reference_only']}", f"{c['p_value']:.3f}",
                       "yes" if c["within_noise"] else "**no**"]
                      for c in summary["comparisons"]], align="rrrrrrl")
    return "\n".join([
        f"oneDNN on against off: `python train.py --stages train` on {summary['dataset']}, "
        f"{summary['epochs']} epochs, {summary['precision']}, seeds "
        f"{', '.join(map(str, summary['seeds']))}, each run a process of its own, in turns; "
        f"scored on the same {summary['num_test']:,} test images. Images/s: train.py's "
        "(first epoch's tracing included).", "", runs, "",
        f"Seed by seed ({summary['noise_test']}):", "", pairs])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.onednn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated")
    parser.add_argument("--epochs", type=int, help="default: the dataset's preset")
    parser.add_argument("--out", default=os.path.join(ROOT, "runs", "onednn"))
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds {args.seeds}: give comma-separated integers, e.g. 0,1,2")
    try:
        summary = run(dataset=args.dataset, seeds=seeds, epochs=args.epochs, out=args.out,
                      data_dir=args.data_dir)
    except (RuntimeError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    markdown = render(summary)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(markdown + "\n")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
