"""`python -m benchmarks [--quick] [--gpu [--dry-run] | --peers | --teardown]`: speed, size, memory.

Writes benchmarks/results/<machine-tag>[-<mode>].json, then renders the .md
beside it from that JSON (and, with --readme, the section of
benchmarks/README.md). `--quick` runs every measurement at tiny sizes; `--gpu`
measures training on a GPU (benchmarks/gpu.py); `--peers` times our training
against PyTorch's, each in processes of its own (benchmarks/peers.py);
`--teardown` what the end of a pass over the data costs (benchmarks/teardown.py);
`--render` renders an earlier result again.

The default mode has one module per section: benchmarks/training_speed.py,
resnet20_differences.py, pipeline.py, sources.py and inference.py, over the
models they time (models.py) and how they time (timing.py); every mode's
result opens with the machine it ran on (machine.py).
"""

import argparse
import json
import os
import sys

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


def run(mode):
    """Measures `SETTINGS[mode]` (`full` or `quick`), one benchmark module a section.

    Returns:
        dict, the JSON-ready result: `benchmarks.machine.result_head`, then
        `training` (`benchmarks.training_speed`), `resnet20_differences`,
        `pipeline`, `sources`, `matmul_macs_per_second` and `inference`
        (each from the module of that name), and `targets` (`TARGETS`).
    """
    from benchmarks import inference, pipeline, resnet20_differences, sources, training_speed
    from benchmarks.machine import result_head

    s = SETTINGS[mode]
    result = result_head(mode, s)
    print("training throughput ...", flush=True)
    result["training"] = [
        training_speed.training_row(name, image_size=size, classes=classes,
                                    batch_size=s[f"{name}_batch"], steps=s[f"{name}_steps"],
                                    repeats=s["repeats"])
        for name, size, classes in (("resnet50", s["resnet50_size"], 1000), ("resnet20", 32, 10))]
    print("resnet20, one difference from the hand-built one at a time ...", flush=True)
    result["resnet20_differences"] = resnet20_differences.resnet20_differences(
        batch_size=s["resnet20_batch"], steps=s["resnet20_steps"], repeats=s["repeats"])
    print("input pipeline ...", flush=True)
    p = s["pipeline"]
    result["pipeline"] = pipeline.pipeline_row(
        image_size=s["resnet50_size"], batch_size=p["batch"], classes=p["classes"],
        per_class=p["per_class"], jpeg_size=p["jpeg_size"], repeats=s["repeats"],
        training_images_per_second=result["training"][0]["ours"])
    result["sources"] = sources.data_sources(s["sources"], result["training"][1])
    print("inference, export, size, memory ...", flush=True)
    result.update(inference.inference_rows(s, image_size=s["resnet50_size"]))
    result["targets"] = targets(result)
    return result


def targets(result) -> dict:
    """Each of `TARGETS` against its figure in `result`: `model`, `value`, `target`, `met`."""
    train, infer = result["training"][0], result["inference"][0]
    measured = {"train_ratio": (train["model"], train["ratio"]),
                "resnet20_train_ratio": ("resnet20", result["training"][1]["ratio"]),
                "int8_latency_ratio": (infer["model"],
                                       infer["variants"]["int8"]["latency_all_threads_vs_float32"]),
                "int8_size_ratio": (infer["model"], infer["variants"]["int8"]["size_vs_float32"])}
    out = {}
    for key, (model, value) in measured.items():
        op, goal = TARGETS[key]
        out[key] = {"model": model, "value": value, "target": f"{op} {goal}",
                    "met": value >= goal if op == ">=" else value <= goal}
    return out


# The README section a mode's tables go to with --readme.
README_SECTIONS = {"full": "results", "gpu": "gpu", "peers": "peers", "teardown": "teardown"}


def _parser():
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
    return parser


def _check_options(parser, args):
    """Refuses (`parser.error`) the options of one mode given to another."""
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


def _mode(args) -> str:
    """The mode the flags ask for, which names the results file and its README section."""
    if args.gpu:
        return "gpu-dry-run" if args.dry_run else "gpu"
    if args.peers:
        return "peers-quick" if args.quick else "peers-resnet20" if args.resnet20_only else "peers"
    if args.teardown:
        return "teardown-quick" if args.quick else "teardown"
    return "quick" if args.quick else "full"


def _measure(mode, args) -> dict:
    """The result of `mode`, from the module that measures it."""
    from benchmarks import gpu, peers, teardown

    if args.gpu:
        return gpu.run(mode, data_dir=args.data_dir)
    if args.peers:
        return peers.run(mode, torch_python=args.torch_python)
    if args.teardown:
        return teardown.run(mode, baseline=args.baseline)
    return run(mode)


def _render(base, *, mode, readme):
    """Renders `base`.json into `base`.md (and, with `readme`, into benchmarks/README.md)."""
    from benchmarks.render import render_markdown
    from report.markdown import replace_section

    with open(base + ".json") as f:
        markdown = render_markdown(json.load(f))
    with open(base + ".md", "w") as f:
        f.write(markdown + "\n")
    print(markdown)
    if readme:
        path = os.path.join(HERE, "README.md")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(replace_section(text, README_SECTIONS[mode], markdown))


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check_options(parser, args)
    if args.render and not os.path.isfile(args.render):
        print(f"error: --render {args.render} does not exist; give a results/*.json file "
              f"written by python -m benchmarks.", file=sys.stderr)
        return 2
    if args.render:
        with open(args.render) as f:
            mode = json.load(f)["mode"]
    else:
        mode = _mode(args)
    if args.readme and mode not in README_SECTIONS:
        print(f"error: --readme takes measured figures only; {args.render or 'this'} is a "
              f"{mode} run.", file=sys.stderr)
        return 2
    if args.render:
        base = os.path.splitext(args.render)[0]
    else:
        try:
            result = _measure(mode, args)
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        os.makedirs(args.out, exist_ok=True)
        base = os.path.join(args.out, result["machine"]["tag"]
                            + ("" if mode == "full" else f"-{mode}"))
        with open(base + ".json", "w") as f:
            json.dump(result, f, indent=1)
    _render(base, mode=mode, readme=args.readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
