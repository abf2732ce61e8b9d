"""`python -m benchmarks [--quick]`: speed, size and memory on this machine, in one process.

Writes benchmarks/results/<machine-tag>.json, then renders
benchmarks/results/<machine-tag>.md from it (and, with --readme, the table in
benchmarks/README.md). `--quick` runs every measurement at tiny sizes.
"""

import argparse
import datetime
import json
import os
import platform
import re
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

SETTINGS = {
    "full": {"resnet50_size": 224, "resnet50_batch": 16, "resnet20_batch": 128, "steps": 3,
             "repeats": 3, "latency_runs": 20, "calibration": 32, "matmul": 2048,
             "pipeline": {"classes": 4, "per_class": 48, "jpeg_size": (500, 375), "batch": 32}},
    "quick": {"resnet50_size": 32, "resnet50_batch": 4, "resnet20_batch": 16, "steps": 2,
              "repeats": 2, "latency_runs": 3, "calibration": 4, "matmul": 256,
              "pipeline": {"classes": 2, "per_class": 4, "jpeg_size": (64, 48), "batch": 4}},
}
TARGETS = {"train_ratio_resnet50": (">=", 1.0), "int8_latency_ratio_resnet50": ("<=", 0.35),
           "int8_size_ratio_resnet50": ("<=", 0.27)}


def machine_info():
    from resnet_keras.backend import tf
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpus = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
            for g in tf.config.list_physical_devices("GPU")]
    tag = f"{platform.machine()}-{os.cpu_count()}cpu" + (f"-{len(gpus)}gpu" if gpus else "")
    return {"tag": tag, "cpu": cpu, "cpu_count": os.cpu_count(), "gpus": gpus,
            "platform": platform.platform(), "tensorflow": tf.__version__}


def gpu_mode(s):
    """ResNet-50 at batch 256 on the GPU: mixed precision + XLA against both off, and keras.applications."""
    from benchmarks import measure
    from resnet_keras.backend import keras
    results = {}
    for label, mixed, xla in (("ours_mixed_xla", True, True), ("ours_fp32", False, False)):
        keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
        model = measure.our_training_model("resnet50", image_size=224, classes=1000,
                                           jit_compile=xla)
        results[label] = measure.training_throughput(model, image_size=224, batch_size=256,
                                                     classes=1000, steps=10, repeats=3)
    keras.mixed_precision.set_global_policy("float32")
    results["keras_applications_fit"] = measure.training_throughput(
        measure.keras_applications_resnet50(image_size=224, classes=1000), image_size=224,
        batch_size=256, classes=1000, steps=10, repeats=3)
    return results


def run(mode):
    from benchmarks import measure
    s = SETTINGS[mode]
    result = {"mode": mode, "settings": s, "machine": machine_info(),
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}

    print("training throughput ...", flush=True)
    size50 = s["resnet50_size"]
    with measure.PeakRSS() as memory:
        ours50 = measure.training_throughput(
            measure.our_training_model("resnet50", image_size=size50, classes=1000),
            image_size=size50, batch_size=s["resnet50_batch"], classes=1000,
            steps=s["steps"], repeats=s["repeats"])
    ref50 = measure.training_throughput(
        measure.keras_applications_resnet50(image_size=size50, classes=1000),
        image_size=size50, batch_size=s["resnet50_batch"], classes=1000,
        steps=s["steps"], repeats=s["repeats"])
    ours20 = measure.training_throughput(
        measure.our_training_model("resnet20", image_size=32, classes=10), image_size=32,
        batch_size=s["resnet20_batch"], classes=10, steps=s["steps"], repeats=s["repeats"])
    ref20 = measure.training_throughput(
        measure.hand_built_resnet20(image_size=32, classes=10), image_size=32,
        batch_size=s["resnet20_batch"], classes=10, steps=s["steps"], repeats=s["repeats"])
    result["training"] = [
        {"model": "resnet50", "image_size": size50, "batch_size": s["resnet50_batch"],
         "ours": ours50, "reference": ref50, "reference_name": "keras.applications.ResNet50 + fit",
         "ratio": ours50["median"] / ref50["median"], "peak_rss_mb": round(memory.peak_mb, 1)},
        {"model": "resnet20", "image_size": 32, "batch_size": s["resnet20_batch"],
         "ours": ours20, "reference": ref20, "reference_name": "hand-built Keras ResNet-20 + fit",
         "ratio": ours20["median"] / ref20["median"]},
    ]

    print("input pipeline ...", flush=True)
    p = s["pipeline"]
    pipeline = measure.pipeline_throughput(image_size=size50, batch_size=p["batch"],
                                           classes=p["classes"], per_class=p["per_class"],
                                           jpeg_size=p["jpeg_size"], repeats=s["repeats"])
    result["pipeline"] = {"images_per_second": pipeline, "jpeg_size": p["jpeg_size"],
                          "training_images_per_second": ours50["median"],
                          "keeps_up": pipeline["median"] > ours50["median"]}

    print("inference, export, size, memory ...", flush=True)
    import numpy as np
    result["matmul_macs_per_second"] = measure.matmul_macs_per_second(size=s["matmul"],
                                                                       repeats=s["repeats"])
    result["inference"] = []
    with tempfile.TemporaryDirectory() as out_dir:
        for name, size in (("resnet50", size50), ("resnet20", 32)):
            calibration = np.random.default_rng(0).uniform(
                0, 255, (s["calibration"], size, size, 3)).astype("float32")
            entry = measure.inference_and_export(name, image_size=size, calibration=calibration,
                                                 runs=s["latency_runs"], out_dir=out_dir)
            peak = result["matmul_macs_per_second"]["median"]
            for variant in entry["variants"].values():
                rate = entry["macs"] / (variant["latency_all_threads_ms"]["median"] / 1e3)
                variant["macs_per_second"] = rate
                variant["fraction_of_matmul"] = rate / peak
            result["inference"].append(entry)
            print(f"  {name}: done", flush=True)

    from training.distribute import has_gpu
    result["gpu"] = gpu_mode(s) if has_gpu() and mode == "full" else None
    r50 = result["inference"][0]["variants"]
    measured = {"train_ratio_resnet50": result["training"][0]["ratio"],
                "int8_latency_ratio_resnet50": r50["int8"]["latency_all_threads_vs_float32"],
                "int8_size_ratio_resnet50": r50["int8"]["size_vs_float32"]}
    result["targets"] = {k: {"value": v, "target": f"{TARGETS[k][0]} {TARGETS[k][1]}",
                             "met": v >= TARGETS[k][1] if TARGETS[k][0] == ">=" else v <= TARGETS[k][1]}
                         for k, v in measured.items()}
    return result


def _ms(d):
    return f"{d['median']:.2f} ({d['min']:.2f}-{d['max']:.2f})"


def render_markdown(result) -> str:
    """The benchmark tables, rendered from the JSON result only."""
    m = result["machine"]
    lines = [f"Machine `{m['tag']}`: {m['cpu']}, {m['cpu_count']} CPUs"
             + (f", GPUs: {', '.join(m['gpus'])}" if m["gpus"] else ", no GPU")
             + f"; TensorFlow {m['tensorflow']}; mode `{result['mode']}`; {result['created']}.",
             "Figures: median (min-max) over repeated timed runs after warm-up.", "",
             "### Training throughput (images/s)", "",
             "| model | input | batch | ours (train.py step) | reference | reference is | ours / reference |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for t in result["training"]:
        lines.append(f"| {t['model']} | {t['image_size']} | {t['batch_size']} | {_ms(t['ours'])} | "
                     f"{_ms(t['reference'])} | {t['reference_name']} | {t['ratio']:.2f} |")
    p = result["pipeline"]
    lines += ["", f"Peak RSS of the resnet50 training run: {result['training'][0]['peak_rss_mb']:.0f} MB.",
              "", "### Input pipeline", "",
              f"Image-folder loader (decode {p['jpeg_size'][0]}x{p['jpeg_size'][1]} JPEG, random-resized "
              f"crop, flip, batch): {_ms(p['images_per_second'])} images/s against "
              f"{p['training_images_per_second']:.1f} images/s of resnet50 training: "
              + ("it keeps up." if p["keeps_up"] else "**it falls short: training would wait for data.**"),
              "", "### Inference (batch 1) and export", "",
              f"Machine float32 matmul: {result['matmul_macs_per_second']['median'] / 1e9:.1f} G multiply-adds/s.",
              ""]
    for e in result["inference"]:
        lines += [f"**{e['model']}** at {e['image_size']}x{e['image_size']}, "
                  f"{e['macs'] / 1e9:.3f} G multiply-adds; Keras float (compiled tf.function): "
                  f"{_ms(e['keras_ms'])} ms.", "",
                  "| variant | size KiB | size / float32 | 1 thread ms | all threads ms | "
                  "latency / float32 (all) | G MAC/s | of matmul peak | convert s | convert peak RSS MB |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, v in e["variants"].items():
            lines.append(
                f"| {name} | {v['size_bytes'] / 1024:.0f} | {v['size_vs_float32']:.3f} | "
                f"{_ms(v['latency_1_thread_ms'])} | {_ms(v['latency_all_threads_ms'])} | "
                f"{v['latency_all_threads_vs_float32']:.2f} | {v['macs_per_second'] / 1e9:.1f} | "
                f"{100 * v['fraction_of_matmul']:.0f}% | {v['convert_seconds']:.1f} | "
                f"{v['convert_peak_rss_mb']:.0f} |")
        lines.append("")
    lines += ["### Targets", "", "| target | measured | goal | met |", "|---|---:|---|---|"]
    for k, t in result["targets"].items():
        lines.append(f"| {k} | {t['value']:.3f} | {t['target']} | {'yes' if t['met'] else 'no'} |")
    if result["gpu"]:
        lines += ["", "### GPU training, resnet50 at 224, batch 256 (images/s)", ""]
        lines += [f"- {k}: {_ms(v)}" for k, v in result["gpu"].items()]
    else:
        lines += ["", "GPU mode: not measured (no GPU on this machine)."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, about a minute")
    parser.add_argument("--out", default=os.path.join(HERE, "results"), help="results folder")
    parser.add_argument("--readme", action="store_true",
                        help="also put the table into benchmarks/README.md")
    args = parser.parse_args(argv)
    result = run("quick" if args.quick else "full")
    os.makedirs(args.out, exist_ok=True)
    base = os.path.join(args.out, result["machine"]["tag"] + ("-quick" if args.quick else ""))
    with open(base + ".json", "w") as f:
        json.dump(result, f, indent=1)
    with open(base + ".json") as f:
        markdown = render_markdown(json.load(f))
    with open(base + ".md", "w") as f:
        f.write(markdown + "\n")
    print(markdown)
    if args.readme:
        readme = os.path.join(HERE, "README.md")
        with open(readme) as f:
            text = f.read()
        text = re.sub(r"(<!-- results:begin -->\n).*?(<!-- results:end -->)",
                      lambda m: m.group(1) + markdown + "\n" + m.group(2), text, flags=re.S)
        with open(readme, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
