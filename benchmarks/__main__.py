"""`python -m benchmarks [--quick] [--gpu [--dry-run] | --peers | --teardown]`: speed, size, memory.

Writes benchmarks/results/<machine-tag>[-<mode>].json, then renders the .md
beside it from that JSON (and, with --readme, the section of
benchmarks/README.md). `--quick` runs every measurement at tiny sizes; `--gpu`
measures training on a GPU (benchmarks/gpu.py); `--peers` times our training
against PyTorch's, each in processes of its own (benchmarks/peers.py);
`--teardown` what the end of a pass over the data costs (benchmarks/teardown.py);
`--render` renders an earlier result again.
"""

import argparse
import datetime
import gc
import json
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

SETTINGS = {
    "full": {"resnet50_size": 224, "resnet50_batch": 16, "resnet20_batch": 128,
             "resnet50_steps": 3, "resnet20_steps": 15, "repeats": 7, "latency_runs": 40,
             "calibration": 32, "matmul": 2048, "inference": ("resnet50", "resnet20"),
             "pipeline": {"classes": 4, "per_class": 48, "jpeg_size": (500, 375), "batch": 32},
             "sources": {"num_train": {"folder": 60000, "cifar10": 50000, "fashion_mnist": 60000},
                         "passes": 2, "epochs": 2}},
    "quick": {"resnet50_size": 32, "resnet50_batch": 4, "resnet20_batch": 16,
              "resnet50_steps": 2, "resnet20_steps": 2, "repeats": 2, "latency_runs": 3,
              "calibration": 4, "matmul": 256, "inference": ("resnet20",),
              "pipeline": {"classes": 2, "per_class": 4, "jpeg_size": (64, 48), "batch": 4},
              "sources": {"num_train": {"folder": 64, "cifar10": 64, "fashion_mnist": 64},
                          "passes": 1, "epochs": 2}},
}
# Set for this 2-core CPU (resnet50's first inference row; our resnet20 step at least as
# fast as the hand-built one); quick mode checks them on the models it measures.
TARGETS = {"train_ratio": (">=", 1.0), "resnet20_train_ratio": (">=", 1.0),
           "int8_latency_ratio": ("<=", 0.35), "int8_size_ratio": ("<=", 0.27)}


def data_sources(s, resnet20):
    """Each source's loader alone and feeding resnet20, against resnet20's train step.

    resnet20 trains in the precision `--train.mixed_precision auto` picks
    here (float32 where that is mixed_float16: the training row has no such
    column); the train step is the training row's rate in that precision, on
    in-memory data.
    """
    from benchmarks import measure
    from training.distribute import choose_precision
    policy = choose_precision("auto").policy
    policy = policy if policy == "mixed_bfloat16" else "float32"
    step = resnet20["ours_bf16" if policy == "mixed_bfloat16" else "ours"]["median"]
    sources = []
    for source, num_train in s["sources"]["num_train"].items():
        print(f"  {source}: {num_train} images ...", flush=True)
        model = measure.our_training_model("resnet20", image_size=32, classes=10, policy=policy)
        entry = measure.source_throughput(source, num_train=num_train,
                                          batch_size=resnet20["batch_size"],
                                          passes=s["sources"]["passes"],
                                          epochs=s["sources"]["epochs"], model=model)
        loader = entry["loader"]
        entry["keeps_ahead"] = {"first_pass": loader["first_pass"] > step,
                                "later_passes": loader["later_passes"]["median"] > step}
        sources.append(entry)
        gc.collect()
    return {"policy": policy, "batch_size": resnet20["batch_size"], "train_step": step,
            "sources": sources}


def run(mode):
    from benchmarks import measure
    s = SETTINGS[mode]
    result = {"mode": mode, "settings": s, "machine": measure.machine_info(),
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
    print("resnet20, one difference from the hand-built one at a time ...", flush=True)
    result["resnet20_differences"] = measure.resnet20_differences(
        batch_size=s["resnet20_batch"], steps=s["resnet20_steps"], repeats=s["repeats"])

    print("input pipeline ...", flush=True)
    p = s["pipeline"]
    pipeline = measure.pipeline_throughput(image_size=size50, batch_size=p["batch"],
                                           classes=p["classes"], per_class=p["per_class"],
                                           jpeg_size=p["jpeg_size"], repeats=s["repeats"])
    result["pipeline"] = {"images_per_second": pipeline, "jpeg_size": p["jpeg_size"],
                          "training_images_per_second": ours50["median"],
                          "keeps_up": pipeline["median"] > ours50["median"]}

    result["sources"] = data_sources(s, result["training"][1])

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

    train, infer = result["training"][0], result["inference"][0]
    measured = {"train_ratio": (train["model"], train["ratio"]),
                "resnet20_train_ratio": ("resnet20", result["training"][1]["ratio"]),
                "int8_latency_ratio": (infer["model"],
                                       infer["variants"]["int8"]["latency_all_threads_vs_float32"]),
                "int8_size_ratio": (infer["model"], infer["variants"]["int8"]["size_vs_float32"])}
    result["targets"] = {}
    for key, (model, value) in measured.items():
        op, goal = TARGETS[key]
        result["targets"][key] = {"model": model, "value": value, "target": f"{op} {goal}",
                                  "met": value >= goal if op == ">=" else value <= goal}
    return result


# The README section a mode's tables go to with --readme.
README_SECTIONS = {"full": "results", "gpu": "gpu", "peers": "peers", "teardown": "teardown"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, about a minute")
    parser.add_argument("--gpu", action="store_true",
                        help="GPU training: float32 against mixed_float16 and XLA, and the "
                             "train stage (benchmarks/gpu.py)")
    parser.add_argument("--dry-run", action="store_true",
                        help="with --gpu: the same code on the CPU at tiny sizes")
    parser.add_argument("--data-dir", help="with --gpu: the Fashion-MNIST IDX files' folder "
                                           "(default: where train.py looks)")
    parser.add_argument("--peers", action="store_true",
                        help="our training against PyTorch's, each framework in processes "
                             "of its own, in turns (benchmarks/peers.py)")
    parser.add_argument("--resnet20-only", action="store_true",
                        help="with --peers: the ResNet-20 row alone at full size (about a "
                             "third of the time; no torchvision needed)")
    parser.add_argument("--torch-python", metavar="PYTHON",
                        help="with --peers: the Python that runs PyTorch (default: this one; "
                             "ResNet-50 needs torchvision there)")
    parser.add_argument("--teardown", action="store_true",
                        help="the end of a pass over the data: fit's stall, the loaders and "
                             "the train stage, with tf.data's autotuning off and on "
                             "(benchmarks/teardown.py)")
    parser.add_argument("--baseline", metavar="DIR",
                        help="with --teardown: another checkout (e.g. a git archive of an "
                             "earlier commit) whose train stage runs in turns with this one's")
    parser.add_argument("--out", default=os.path.join(HERE, "results"), help="results folder")
    parser.add_argument("--readme", action="store_true",
                        help="also put the tables into benchmarks/README.md")
    parser.add_argument("--render", metavar="JSON",
                        help="measure nothing: render this earlier result again "
                             "(its .md beside it)")
    args = parser.parse_args(argv)
    from benchmarks import gpu, peers, teardown
    from benchmarks.render import render_markdown
    from report.markdown import replace_section

    if (args.dry_run or args.data_dir) and not args.gpu:
        parser.error("--dry-run and --data-dir go with --gpu")
    if args.gpu and args.quick:
        parser.error("--quick and --gpu are separate modes; the GPU mode's tiny run is "
                     "--gpu --dry-run")
    if sum((args.gpu, args.peers, args.teardown)) > 1:
        parser.error("--gpu, --peers and --teardown are separate modes")
    if args.baseline and not args.teardown:
        parser.error("--baseline goes with --teardown")
    if args.baseline and not os.path.isfile(os.path.join(args.baseline, "train.py")):
        parser.error(f"--baseline {args.baseline} is not a checkout of this project "
                     f"(no train.py there)")
    if (args.torch_python or args.resnet20_only) and not args.peers:
        parser.error("--torch-python and --resnet20-only go with --peers")
    if args.resnet20_only and args.quick:
        parser.error("--quick already measures ResNet-20 alone, at tiny sizes")
    if args.render:
        if not os.path.isfile(args.render):
            print(f"error: --render {args.render} does not exist; give a results/*.json file "
                  f"written by python -m benchmarks.", file=sys.stderr)
            return 2
        with open(args.render) as f:
            mode = json.load(f)["mode"]
    else:
        mode = ("gpu-dry-run" if args.dry_run else "gpu") if args.gpu else (
            ("peers-quick" if args.quick else "peers-resnet20" if args.resnet20_only
             else "peers") if args.peers else (
                ("teardown-quick" if args.quick else "teardown") if args.teardown else (
                    "quick" if args.quick else "full")))
    if args.readme and mode not in README_SECTIONS:
        print(f"error: --readme takes measured figures only; {args.render or 'this'} is a "
              f"{mode} run.", file=sys.stderr)
        return 2
    if args.render:
        base = os.path.splitext(args.render)[0]
    else:
        try:
            if args.gpu:
                result = gpu.run(mode, data_dir=args.data_dir)
            elif args.peers:
                result = peers.run(mode, torch_python=args.torch_python)
            elif args.teardown:
                result = teardown.run(mode, baseline=args.baseline)
            else:
                result = run(mode)
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        os.makedirs(args.out, exist_ok=True)
        base = os.path.join(args.out, result["machine"]["tag"]
                            + ("" if mode == "full" else f"-{mode}"))
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
        text = replace_section(text, README_SECTIONS[mode], markdown)
        with open(readme, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
