"""`python -m benchmarks --gpu`: training speed on a GPU, float32 against mixed_float16 and XLA.

Times ResNet-50 v1.5 at 224 (batch 256) and ResNet-20 at 32 (batch 512) in
float32 (TF32 on Ampere and later), mixed_float16, and mixed_float16 + XLA, in
turns; then the train stage of `python train.py --preset fashion-mnist` (digits
when Fashion-MNIST is not installed) for a few epochs; sized to finish within
8 minutes. `--dry-run` runs the same code on the CPU at tiny sizes, to check
it without a GPU.
"""

import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SETTINGS = {
    # (model, input side, batch, steps a round, variant)
    "gpu": {"rows": (("resnet50", 224, 256, 20, "v1.5"), ("resnet20", 32, 512, 40, None)),
            "repeats": 3, "preset": "fashion-mnist", "epochs": 4},
    "gpu-dry-run": {"rows": (("resnet50", 32, 2, 1, "v1.5"), ("resnet20", 32, 4, 1, None)),
                    "repeats": 1, "preset": "digits", "epochs": 1},
}
# (column, Keras dtype policy, XLA), timed in turns.
MODES = (("float32", "float32", False), ("mixed_float16", "mixed_float16", False),
         ("mixed_float16_xla", "mixed_float16", True))
# NVIDIA's published one-GPU training throughput of their TensorFlow ResNet-50
# v1.5 at batch 256 (NVIDIA/DeepLearningExamples, TensorFlow/Classification/
# ConvNets/resnet50v1.5, README; the A100 figures differ between its
# revisions, hence ranges): what a tuned pipeline reaches, for comparison.
NVIDIA_RESNET50 = (
    {"gpu": "A100-40GB", "precision": "AMP + XLA", "images_per_second": (1770, 2375)},
    {"gpu": "A100-40GB", "precision": "TF32", "images_per_second": (808, 909)},
    {"gpu": "V100-16GB", "precision": "AMP + XLA", "images_per_second": (1270, 1270)},
)


def run(mode, *, data_dir=None):
    """Measures `SETTINGS[mode]`; returns the JSON-ready result.

    Raises:
        RuntimeError: `gpu` mode without a GPU, or the train stage failed.
    """
    from benchmarks.machine import result_head
    from benchmarks.models import our_training_model
    from benchmarks.timing import paired_ratio, training_throughput
    from training.distribute import has_gpu

    s = SETTINGS[mode]
    if mode == "gpu" and not has_gpu():
        raise RuntimeError("TensorFlow sees no GPU here; run `python -m benchmarks --gpu "
                           "--dry-run` to check the code on the CPU.")
    result = {**result_head(mode, s), "training": []}
    for name, size, batch, steps, variant in s["rows"]:
        print(f"  {name} at {size}, batch {batch} ...", flush=True)
        models = {column: our_training_model(name, image_size=size, classes=1000,
                                             jit_compile=xla, policy=policy, variant=variant)
                  for column, policy, xla in MODES}
        rates, _ = training_throughput(models, image_size=size, batch_size=batch, classes=1000,
                                       steps=steps, repeats=s["repeats"])
        result["training"].append({
            "model": name, "image_size": size, "batch_size": batch, **rates,
            **{f"{column}_speedup": paired_ratio(rates[column], rates["float32"])
               for column, _, _ in MODES[1:]}})
        del models
    print(f"  train stage, --preset {s['preset']} ...", flush=True)
    result["train_stage"] = train_stage(s["preset"], epochs=s["epochs"], data_dir=data_dir)
    result["nvidia_resnet50"] = NVIDIA_RESNET50
    return result


def train_stage(preset, *, epochs, data_dir=None):
    """`python train.py --preset <preset> --stages train` for `epochs`, in a child process.

    `fashion-mnist` falls back to `digits` when its files are not found.

    Returns:
        dict: the command, and from its train_result.json the images/s,
        seconds, precision and test top-1.
    """
    from datasets import load_dataset
    from rundir import RunDir

    fallback = None
    if preset == "fashion-mnist":
        try:
            load_dataset("fashion_mnist", data_dir=data_dir)
        except FileNotFoundError as e:
            fallback, preset = str(e), "digits"
    data = ["--data.data_dir", data_dir] if data_dir and preset != "digits" else []

    def command(run_dir):
        return ["train.py", "--preset", preset, "--stages", "train", "--train.epochs",
                str(epochs), "--run-dir", run_dir, *data]

    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, *command(tmp)], cwd=ROOT, capture_output=True,
                              text=True)
        if done.returncode:
            raise RuntimeError(f"python {' '.join(command(tmp))} failed (exit "
                               f"{done.returncode}): {done.stderr.strip()[-2000:]}")
        run = RunDir(tmp)
        trained = run.read_json(run.train_result)
    keys = ("dataset", "epochs", "steps_per_epoch", "global_batch", "seconds",
            "images_per_second", "test_top1", "precision")
    return {"command": "python " + " ".join(command("<tmp>")),
            "fashion_mnist_missing": fallback, **{k: trained[k] for k in keys}}
