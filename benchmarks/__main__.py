"""`python -m benchmarks [--quick]`: speed, size and memory on this machine, in one process.

Writes benchmarks/results/<machine-tag>.json, then renders
benchmarks/results/<machine-tag>.md from it (and, with --readme, the table in
benchmarks/README.md). `--quick` runs every measurement at tiny sizes;
`--render` renders an earlier result again.
"""

import argparse
import datetime
import gc
import json
import os
import platform
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

SETTINGS = {
    "full": {"resnet50_size": 224, "resnet50_batch": 16, "resnet20_batch": 128,
             "resnet50_steps": 3, "resnet20_steps": 15, "repeats": 7, "latency_runs": 40,
             "calibration": 32, "matmul": 2048, "inference": ("resnet50", "resnet20"),
             "pipeline": {"classes": 4, "per_class": 48, "jpeg_size": (500, 375), "batch": 32}},
    "quick": {"resnet50_size": 32, "resnet50_batch": 4, "resnet20_batch": 16,
              "resnet50_steps": 2, "resnet20_steps": 2, "repeats": 2, "latency_runs": 3,
              "calibration": 4, "matmul": 256, "inference": ("resnet20",),
              "pipeline": {"classes": 2, "per_class": 4, "jpeg_size": (64, 48), "batch": 4}},
}
# Set for resnet50 on this 2-core CPU; quick mode checks them on the models it measures.
TARGETS = {"train_ratio": (">=", 1.0), "int8_latency_ratio": ("<=", 0.35),
           "int8_size_ratio": ("<=", 0.27)}


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
    """ResNet-50 at batch 256 on the GPU: mixed precision + XLA, both off, keras.applications."""
    from benchmarks import measure
    models = {}
    for label, policy, xla in (("ours_mixed_xla", "mixed_float16", True),
                               ("ours_fp32", "float32", False)):
        models[label] = measure.our_training_model("resnet50", image_size=224, classes=1000,
                                                   jit_compile=xla, policy=policy)
    models["keras_applications_fit"] = measure.keras_applications_resnet50(image_size=224,
                                                                           classes=1000)
    rates, _ = measure.training_throughput(models, image_size=224, batch_size=256,
                                           classes=1000, steps=10, repeats=3)
    return rates


def run(mode):
    from benchmarks import measure
    s = SETTINGS[mode]
    result = {"mode": mode, "settings": s, "machine": machine_info(),
              "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}

    print("training throughput ...", flush=True)
    size50 = s["resnet50_size"]
    result["training"] = []
    for name, size, classes, reference_name, reference in (
            ("resnet50", size50, 1000, "keras.applications.ResNet50 + fit",
             measure.keras_applications_resnet50),
            ("resnet20", 32, 10, "hand-built Keras ResNet-20 + fit",
             measure.hand_built_resnet20)):
        batch = s[f"{name}_batch"]
        rates, peak_mb = measure.training_throughput(
            {"ours": measure.our_training_model(name, image_size=size, classes=classes),
             "ours_bf16": measure.our_training_model(name, image_size=size, classes=classes,
                                                     policy="mixed_bfloat16"),
             "ours_bare": measure.bare_training_model(name, image_size=size, classes=classes),
             "reference": reference(image_size=size, classes=classes)},
            image_size=size, batch_size=batch, classes=classes, steps=s[f"{name}_steps"],
            repeats=s["repeats"])
        result["training"].append(
            {"model": name, "image_size": size, "batch_size": batch, **rates,
             "reference_name": reference_name,
             "ratio": measure.paired_ratio(rates["ours"], rates["reference"]),
             "bare_ratio": measure.paired_ratio(rates["ours_bare"], rates["reference"]),
             "bf16_ratio": measure.paired_ratio(rates["ours_bf16"], rates["reference"]),
             "bf16_speedup": measure.paired_ratio(rates["ours_bf16"], rates["ours"]),
             "peak_rss_mb": round(peak_mb["ours"], 1)})
        gc.collect()
    ours50 = result["training"][0]["ours"]

    print("input pipeline ...", flush=True)
    p = s["pipeline"]
    pipeline = measure.pipeline_throughput(image_size=size50, batch_size=p["batch"],
                                           classes=p["classes"], per_class=p["per_class"],
                                           jpeg_size=p["jpeg_size"], repeats=s["repeats"])
    result["pipeline"] = {"images_per_second": pipeline, "jpeg_size": p["jpeg_size"],
                          "training_images_per_second": ours50["median"],
                          "keeps_up": pipeline["median"] > ours50["median"]}

    print("inference, export, size, memory ...", flush=True)
    result["matmul_macs_per_second"] = measure.matmul_macs_per_second(size=s["matmul"],
                                                                       repeats=s["repeats"])
    result["inference"] = []
    with tempfile.TemporaryDirectory() as out_dir:
        for name in s["inference"]:
            size = size50 if name == "resnet50" else 32
            calibration = np.random.default_rng(0).uniform(
                0, 255, (s["calibration"], size, size, 3)).astype("float32")
            entry = measure.inference_and_export(
                name, image_size=size, calibration=calibration, runs=s["latency_runs"],
                out_dir=out_dir, reference=measure.inference_reference(name, image_size=size))
            peak = result["matmul_macs_per_second"]["median"]
            for variant in entry["variants"].values():
                rate = entry["macs"] / (variant["latency_all_threads_ms"]["median"] / 1e3)
                variant["macs_per_second"] = rate
                variant["fraction_of_matmul"] = rate / peak
            result["inference"].append(entry)
            print(f"  {name}: done", flush=True)

    from training.distribute import has_gpu
    result["gpu"] = gpu_mode(s) if has_gpu() and mode == "full" else None
    train, infer = result["training"][0], result["inference"][0]
    measured = {"train_ratio": (train["model"], train["ratio"]),
                "int8_latency_ratio": (infer["model"],
                                       infer["variants"]["int8"]["latency_all_threads_vs_float32"]),
                "int8_size_ratio": (infer["model"], infer["variants"]["int8"]["size_vs_float32"])}
    result["targets"] = {}
    for key, (model, value) in measured.items():
        op, goal = TARGETS[key]
        result["targets"][key] = {"model": model, "value": value, "target": f"{op} {goal}",
                                  "met": value >= goal if op == ">=" else value <= goal}
    return result


def _ms(d):
    return f"{d['median']:.2f} ({d['min']:.2f}-{d['max']:.2f})"


def _placement(x):
    """`79/82` plus the op types XNNPACK left to LiteRT's own kernels."""
    left = ", ".join(f"{op} x{n}" for op, n in x["not_delegated"].items())
    return f"{x['delegated']}/{x['ops']}" + (f" (not: {left})" if left else "")


def _training_table(training):
    from report.markdown import md_table

    rows = [[t["model"], t["image_size"], t["batch_size"], _ms(t["ours"]),
             _ms(t["ours_bf16"]) if "ours_bf16" in t else "—", _ms(t["ours_bare"]),
             _ms(t["reference"]), t["reference_name"], f"{t['ratio']:.2f}",
             f"{t['bare_ratio']:.2f}",
             f"{t['bf16_speedup']:.2f}" if "bf16_speedup" in t else "—"] for t in training]
    return md_table(["model", "input", "batch", "ours", "ours mixed_bfloat16", "ours bare",
                     "reference", "reference is", "ours / reference", "bare / reference",
                     "bfloat16 / float32"], rows, align="lrrrrrrlrrr")


def _files_table(entry):
    """One inference entry's files; the converter columns are ours only."""
    from report.markdown import cell, md_table

    rows = []
    for name, v in (*entry["variants"].items(), *entry["others"].items()):
        own = name in entry["variants"]
        rows.append([name, f"{v['size_bytes'] / 1024:.0f}", f"{v['size_vs_float32']:.3f}",
                     _ms(v["latency_1_thread_ms"]), _ms(v["latency_all_threads_ms"]),
                     f"{v['latency_all_threads_vs_float32']:.2f}",
                     cell(v["macs_per_second"] / 1e9 if own else None, ".1f"),
                     cell(100 * v["fraction_of_matmul"] if own else None, ".0f", "%"),
                     cell(v["convert_seconds"] if own else None, ".1f"),
                     cell(v["convert_peak_rss_mb"] if own else None, ".0f"),
                     _placement(v["xnnpack"])])
    return md_table(["file", "size KiB", "size / float32", "1 thread ms", "all threads ms",
                     "latency / float32 (all)", "G MAC/s", "of matmul peak", "convert s",
                     "convert peak RSS MB", "ops on XNNPACK"], rows, align="lrrrrrrrrrl")


def _targets_table(targets):
    from report.markdown import md_table

    rows = [[k, t["model"], f"{t['value']:.3f}", t["target"], "yes" if t["met"] else "no"]
            for k, t in targets.items()]
    return md_table(["target", "model", "measured", "goal", "met"], rows, align="llrll")


def render_markdown(result) -> str:
    """The benchmark tables, rendered from the JSON result only."""
    m = result["machine"]
    lines = [f"Machine `{m['tag']}`: {m['cpu']}, {m['cpu_count']} CPUs"
             + (f", GPUs: {', '.join(m['gpus'])}" if m["gpus"] else ", no GPU")
             + f"; TensorFlow {m['tensorflow']}; mode `{result['mode']}`; {result['created']}.",
             "Figures: median (min-max) over repeated timed runs after warm-up.", "",
             "### Training throughput (images/s)", "",
             "Ours is the train.py step (L2 weight decay, top-5 metric) in float32, and in "
             "mixed_bfloat16 (what `--train.mixed_precision auto` picks on a CPU with "
             "AMX-BF16 or AVX512-BF16); ours bare is the same network compiled as the "
             "reference is (loss and accuracy only). The models of a row train in turns, "
             "one epoch each per round; a ratio is the median of the rounds' ratios.", "",
             _training_table(result["training"]), ""]
    for t in result["training"]:
        per_round = {key: np.divide(t[key]["rounds"], t["reference"]["rounds"])
                     for key in ("ours", "ours_bare")}
        lines.append(f"- {t['model']}, round by round: ours / reference "
                     f"{per_round['ours'].min():.2f}-{per_round['ours'].max():.2f}, bare / "
                     f"reference {per_round['ours_bare'].min():.2f}-"
                     f"{per_round['ours_bare'].max():.2f}.")
    p = result["pipeline"]
    lines += ["", f"Peak RSS while ours trained resnet50 (the reference model also in memory): "
              f"{result['training'][0]['peak_rss_mb']:.0f} MB.",
              "", "### Input pipeline", "",
              f"Image-folder loader (decode {p['jpeg_size'][0]}x{p['jpeg_size'][1]} JPEG, "
              f"random-resized crop, flip, batch): {_ms(p['images_per_second'])} images/s "
              f"against {p['training_images_per_second']:.1f} images/s of resnet50 training: "
              + ("it keeps up." if p["keeps_up"]
                 else "**it falls short: training would wait for data.**"),
              "", "### Inference (batch 1) and export", "",
              f"Machine float32 matmul: "
              f"{result['matmul_macs_per_second']['median'] / 1e9:.1f} G multiply-adds/s.",
              ""]
    for e in result["inference"]:
        lines += [f"**{e['model']}** at {e['image_size']}x{e['image_size']}, "
                  f"{e['macs'] / 1e9:.3f} G multiply-adds; Keras float (compiled tf.function): "
                  f"{_ms(e['keras_ms'])} ms. All files timed in the same turns.", "",
                  _files_table(e)]
        tool = e["litert_tool"]
        lines += ["", f"LiteRT's benchmark tool (`ai_edge_litert.tools.benchmark_litert_model`, "
                  f"all threads), a second runtime path: float32 {_ms(tool['float32'])} ms, "
                  f"int8 {_ms(tool['int8'])} ms, int8 / float32 "
                  f"{tool['int8']['median'] / tool['float32']['median']:.2f}."]
        reference = e.get("reference")
        if reference:
            key = "latency_all_threads_ms"
            ours = e["variants"]["int8"][key]["median"]
            theirs = e["others"][f"{reference['label']} int8"][key]["median"]
            own = e["others"]["int8 preprocessing only"][key]["median"]
            label = reference["label"]
            lines.append(
                f"Our int8 file against the {label} int8 file (all threads): {ours:.2f} against "
                f"{theirs:.2f} ms ({ours - theirs:+.2f} ms). Ours takes raw pixels and "
                f"normalizes inside; that normalization alone, as an int8 file, takes "
                f"{own:.2f} ms. " + (f"The {label} file takes {reference['input']}: the app "
                                    f"does that work." if reference["input"] != "raw pixels"
                                    else f"The {label} file also takes raw pixels."))
        lines.append("")
    lines += ["### Targets", "", _targets_table(result["targets"])]
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
    parser.add_argument("--render", metavar="JSON",
                        help="measure nothing: render this earlier result again "
                             "(its .md beside it)")
    args = parser.parse_args(argv)
    from report.markdown import replace_section

    if args.render:
        if not os.path.isfile(args.render):
            print(f"error: --render {args.render} does not exist; give a results/*.json file "
                  f"written by python -m benchmarks.", file=sys.stderr)
            return 2
        base = os.path.splitext(args.render)[0]
    else:
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
        text = replace_section(text, "results", markdown)
        with open(readme, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
