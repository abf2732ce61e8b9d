"""Markdown tables of a benchmark result, rendered from its JSON only (`render_markdown`)."""

import numpy as np

from report.evidence import op_counts
from report.markdown import cell, md_table


def _machine_line(result):
    """The line every table opens with: the `machine` (`benchmarks.machine`), mode and time."""
    from resnet_keras.backend import OneDNN

    m = result["machine"]
    # Results measured before the CPU's features and oneDNN were recorded lack them.
    features = (f" ({', '.join(m['cpu_features']) or 'none of AVX2, AVX512, VNNI, BF16'})"
                if "cpu_features" in m else "")
    onednn = f"; {OneDNN(**m['onednn']).describe()}" if "onednn" in m else ""
    return (f"Machine `{m['tag']}`: {m['cpu']}{features}, {m['cpu_count']} CPUs"
            + (f", GPUs: {', '.join(m['gpus'])}" if m["gpus"] else ", no GPU")
            + f"; TensorFlow {m['tensorflow']}{onednn}; mode `{result['mode']}`; "
            f"{result['created']}. Figures: median (min-max) over repeated timed runs after "
            "warm-up.")


def _ms(d):
    return f"{d['median']:.2f} ({d['min']:.2f}-{d['max']:.2f})"


def _images(value):
    """Images/s: whole numbers from 100 up (1,020, 702), two decimals below (5.41)."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def _rate(d):
    return f"{_images(d['median'])} ({_images(d['min'])}-{_images(d['max'])})"


def _placement(x):
    """`79/82` plus the op types XNNPACK left to LiteRT's own kernels."""
    left = op_counts(x["not_delegated"])
    return f"{x['delegated']}/{x['ops']}" + (f" (not: {left})" if left else "")


def _training_table(training):
    rows = [[t["model"], t["image_size"], t["batch_size"], _ms(t["ours"]), _ms(t["ours_bf16"]),
             _ms(t["ours_bare"]), _ms(t["reference"]), t["reference_name"], f"{t['ratio']:.2f}",
             f"{t['bare_ratio']:.2f}", f"{t['bf16_speedup']:.2f}"] for t in training]
    return md_table(["model", "input", "batch", "ours", "ours mixed_bfloat16", "ours bare",
                     "reference", "reference is", "ours / reference", "bare / reference",
                     "bfloat16 / float32"], rows, align="lrrrrrrlrrr")


def _differences_section(differences):
    from benchmarks.resnet20_differences import RESNET20_DIFFERENCES

    rows = [[label, _rate(r), f"{r['ratio']:.2f}",
             f"{min(np.divide(r['rounds'], differences['hand-built']['rounds'])):.2f}-"
             f"{max(np.divide(r['rounds'], differences['hand-built']['rounds'])):.2f}",
             f"{r['ops']:,}"] for label, r in differences.items()]
    return "\n".join([
        "### Where resnet20's train step differs from the hand-built one", "",
        "The hand-built ResNet-20 with one of our network's differences at a time, and ours "
        "compiled the same way (loss and accuracy only), all in float32 in turns: the "
        "`Normalization` layer for its `Rescaling`, explicit 1-pixel padding before each "
        "stride-2 conv for 'same', the option-A shortcut (a frozen 1x1 stride-2 conv) for a "
        f"1x1 projection + BN. Variants: {', '.join(RESNET20_DIFFERENCES)}, ours bare. "
        "Ops: what the compiled train step executes (its graph and the functions it "
        "calls), counted, not timed.", "",
        md_table(["network", "images/s", "/ hand-built", "rounds", "train-step ops"], rows,
                 align="lrrrr")])


def _sources_section(sources):
    from benchmarks.sources import SOURCES

    rows = []
    for e in sources["sources"]:
        fed = e["fed_training"]
        rows.append([SOURCES[e["source"]], f"{e['num_train']:,}",
                     f"{e['loader']['first_pass']:,.0f}", _rate(e["loader"]["later_passes"]),
                     " / ".join(f"{r:,.0f}" for r in fed["loader"]),
                     " / ".join(f"{r:,.0f}" for r in fed["in_memory"]),
                     "yes" if e["keeps_ahead"]["first_pass"] else "**no**",
                     "yes" if e["keeps_ahead"]["later_passes"] else "**no**"])
    table = md_table(["source", "training images", "loader alone, first pass",
                      "loader alone, later passes", "fit fed by it, epoch by epoch",
                      "fit on one in-memory batch, in turns", "ahead, first pass",
                      "ahead, later"], rows, align="lrrrrrll")
    return "\n".join([
        "### Data sources (images/s)", "",
        f"Random images written in each format and read back through `load_dataset`, "
        f"the training stream as train.py reads it (shuffled, augmented, batch "
        f"{sources['batch_size']}). The loader alone: its first pass (a folder's files "
        f"decoded, then kept in memory when they fit) and later passes, against resnet20's "
        f"train step in {sources['policy']} from the training table, "
        f"{sources['train_step']:,.0f} images/s. Then resnet20 trained by `fit` fed by the "
        f"loader, a whole pass an epoch, each epoch in turns with one of the same steps on "
        f"one in-memory batch.",
        "", table])


def _files_table(entry):
    """One inference entry's files; the converter columns are ours only."""

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
    rows = [[k, t["model"], f"{t['value']:.3f}", t["target"], "yes" if t["met"] else "no"]
            for k, t in targets.items()]
    return md_table(["target", "model", "measured", "goal", "met"], rows, align="llrll")


def render_markdown(result) -> str:
    """The benchmark tables, rendered from the JSON result only."""
    if result["mode"].startswith("gpu"):
        return _gpu_markdown(result)
    if result["mode"].startswith("peers"):
        return _peers_markdown(result)
    if result["mode"].startswith("teardown"):
        return _teardown_markdown(result)
    lines = [_machine_line(result), "",
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
              "", _differences_section(result["resnet20_differences"]),
              "", "### Input pipeline", "",
              f"Image-folder loader (decode {p['jpeg_size'][0]}x{p['jpeg_size'][1]} JPEG, "
              f"random-resized crop, flip, batch): {_ms(p['images_per_second'])} images/s "
              f"against {p['training_images_per_second']:.1f} images/s of resnet50 training: "
              + ("it keeps up." if p["keeps_up"]
                 else "**it falls short: training would wait for data.**"),
              "", _sources_section(result["sources"]),
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
    return "\n".join(lines)


def _gpu_markdown(result):
    from benchmarks.gpu import MODES

    columns = [column for column, _, _ in MODES]
    rows = [[t["model"], t["image_size"], t["batch_size"], *(_rate(t[c]) for c in columns),
             *(f"{t[f'{c}_speedup']:.2f}" for c in columns[1:])] for t in result["training"]]
    lines = [_machine_line(result), ""]
    if result["mode"] == "gpu-dry-run":
        lines += ["**Dry run on the CPU at tiny sizes**: these figures check the code, "
                  "not a GPU.", ""]
    lines += [
        "Our train.py step (v1.5 for ResNet-50, 1,000 classes, synthetic in-memory batches), "
        "each precision one epoch per round in turns; a speed-up is the median of the "
        "rounds' ratios to float32 (TF32 on Ampere and later GPUs).", "",
        md_table(["model", "input", "batch", *columns, "mixed_float16 / float32",
                  "+ XLA / float32"], rows, align="lrrrrrrr"), ""]
    t = result["train_stage"]
    missing = (f" Fashion-MNIST was not found ({t['fashion_mnist_missing']}), so digits ran."
               if t["fashion_mnist_missing"] else "")
    lines += [f"Train stage: `{t['command']}`: {t['dataset']}, {t['epochs']} epochs of "
              f"{t['steps_per_epoch']} steps at batch {t['global_batch']} in "
              f"{t['seconds']:.1f} s, {t['images_per_second']:,.0f} images/s (first epoch's "
              f"tracing and validation included), {t['precision']['policy']} "
              f"({t['precision']['reason']}), test top-1 {100 * t['test_top1']:.2f}%."
              + missing, ""]
    nvidia = [[n["gpu"], n["precision"], "–".join(f"{v:,}" for v in sorted(
        set(n["images_per_second"])))] for n in result["nvidia_resnet50"]]
    ours = next(t for t in result["training"] if t["model"] == "resnet50")
    lines += ["NVIDIA's published TensorFlow ResNet-50 v1.5 training throughput, one GPU, "
              "batch 256 (DeepLearningExamples, ranges over README revisions), beside ours "
              f"here: float32 {_rate(ours['float32'])}, mixed_float16 + XLA "
              f"{_rate(ours['mixed_float16_xla'])} images/s.", "",
              md_table(["GPU", "precision", "images/s"], nvidia, align="llr")]
    return "\n".join(lines)


def _stolen(shares):
    """Each process's stolen CPU share in %, or a dash where it was not measured."""
    if not shares or any(share is None for share in shares):
        return "—"
    return " / ".join(f"{100 * share:.1f}" for share in shares)


def _onednn_decision(training):
    """The sentence on the default oneDNN choice, from the AVX2-kernel ratios; [] without them."""
    key = "oneDNN on AVX2 kernels / off"
    ratios = {t["model"]: t["ratios"][key]["median"] for t in training if key in t["ratios"]}
    if not ratios:
        return []
    measured = ", ".join(f"{model} {ratio:.2f}x" for model, ratio in ratios.items())
    verdict = ("Hence `resnet_keras/backend.py` turns oneDNN on where TensorFlow leaves it off"
               if min(ratios.values()) > 1 else
               "**Not faster on every net here: the default in `resnet_keras/backend.py`, "
               "oneDNN on where TensorFlow leaves it off, needs measuring again**")
    return [f"oneDNN held to AVX2 kernels against oneDNN off (what a CPU with AVX2 only gets "
            f"with oneDNN and without it): {measured}. {verdict}; accuracy both ways: "
            "docs/experiments/onednn/results.md.", ""]


def _peers_markdown(result):
    keys = list(result["columns"])
    training = result["training"]
    rows = [[t["model"], t["image_size"], t["batch_size"], *(_rate(t[k]) for k in keys)]
            for t in training]
    spread_rows = [[t["model"], result["columns"][k],
                    " / ".join(_images(r) for r in t[k]["rounds"]),
                    f"{t[k]['across_max_over_min']:.2f}", f"{t[k]['within_max_over_min']:.2f}",
                    _stolen(t[k].get("stolen"))]
                   for t in training for k in keys]
    names = list(training[0]["ratios"])
    ratio_rows = [[t["model"], *(f"{t['ratios'][n]['median']:.2f} ({t['ratios'][n]['min']:.2f}-"
                                 f"{t['ratios'][n]['max']:.2f})" if n in t["ratios"] else "—"
                                 for n in names)] for t in training]
    versions = sorted({t[k]["reports"]["version"] for t in training for k in keys})
    s = result["settings"]
    lines = [_machine_line(result), "",
             f"Training images/s, one synthetic in-memory batch, SGD with momentum; each "
             f"column runs in processes of its own ({s['processes']} per column and net, one "
             f"per round, in turns), each process one untimed epoch then {s['epochs']} timed "
             f"ones. Cells: median (min-max) of the processes' medians. "
             f"{', '.join(versions)}.", "",
             md_table(["model", "input", "batch", *(result["columns"][k] for k in keys)],
                      rows, align="lrr" + "r" * len(keys)), "",
             "Ratios, process by process within a round: median (min-max) over rounds.", "",
             md_table(["model", *names], ratio_rows, align="l" + "r" * len(names)), "",
             *_onednn_decision(training),
             "The spread across processes against the spread within one: each process's "
             "median epoch, round by round; the largest over the smallest across processes, "
             "and the largest such ratio among the epochs of one process; the share of the "
             "machine's CPU time its hypervisor took while each process trained (/proc/stat "
             "steal).", "",
             md_table(["model", "column", "processes' medians", "across: max / min",
                       "within: max / min", "CPU stolen %"], spread_rows, align="llrrrr"), "",
             "Targets: every ours / PyTorch ratio "
             f">= {result['target']}.", "",
             md_table(["model", "ratio", "measured", "goal", "met"],
                      [[t["model"], t["ratio"], f"{t['value']:.2f}", t["target"],
                        "yes" if t["met"] else "**no**"] for t in result["targets"]],
                      align="llrll")]
    return "\n".join(lines)


def _seconds(values):
    d = {"median": float(np.median(values)), "min": min(values), "max": max(values)}
    return f"{d['median']:.2f} ({d['min']:.2f}-{d['max']:.2f})"


def _teardown_markdown(result):
    from benchmarks.teardown import AUTOTUNE

    s = result["settings"]
    stall = result["stall"]
    stall_rows = [[f"autotune {k}", len(stall[k]["stall_seconds"]),
                   _seconds(stall[k]["stall_seconds"]),
                   sum(x > 1.0 for x in stall[k]["stall_seconds"]),
                   " / ".join(f"{x:.1f}" for x in stall[k]["stall_seconds"]),
                   _seconds([e for run in stall[k]["epoch_seconds"] for e in run]),
                   _seconds(stall[k]["fit_seconds"])] for k in AUTOTUNE]
    loader_rows = [[r["source"], f"{r['images']:,}",
                    *(_images(r[k]["first_pass"]) for k in AUTOTUNE),
                    *(_rate(r[k]["later_passes"]) for k in AUTOTUNE),
                    f"{r['off']['later_passes']['median'] / r['on']['later_passes']['median']:.2f}"]
                   for r in result["loaders"]]
    reads = [f"{r['source']}: {_seconds(r['read_seconds']['off'])} s with autotuning off, "
             f"{_seconds(r['read_seconds']['on'])} s on"
             for r in result["loaders"] if "read_seconds" in r]
    stage_rows = []
    for label, runs in result["train_stage"].items():
        for i, r in enumerate(runs, 1):
            stage_rows.append([label, i, f"{r['stage_seconds']:.1f}", r["epochs_end_seconds"],
                               f"{r['after_epochs_seconds']:.1f}", f"{r['seconds']:.1f}",
                               cell(r.get("train_seconds"), ".1f"),
                               cell(r.get("held_out_seconds"), ".1f"),
                               f"{r['images_per_second']:.0f}"])
    st, lo, ts = s["stall"], s["loaders"], s["train_stage"]
    return "\n".join([
        _machine_line(result), "",
        "### The end of `fit`", "",
        f"resnet20 on digits, fed as train.py feeds it (shuffled, augmented, batch "
        f"{st['batch']}, the test split evaluated every epoch); {st['runs']} `fit` calls per "
        f"setting of {st['epochs']} epochs x {st['steps']} steps, in turns. The stall is the "
        "time from the last epoch's end to `fit` returning; autotune on is the same pipelines "
        "with `tf.data.Options().autotune.enabled = True`, as they were before issue 37.", "",
        md_table(["pipelines", "runs", "stall s", "runs > 1 s", "stall s, run by run",
                  "epoch s", "fit s"], stall_rows, align="lrrrlrr"), "",
        "### Loaders (images/s)", "",
        f"Each source's training stream (shuffled, augmented, batch {lo['batch']}, "
        f"{lo['jpeg_batch']} for the JPEGs) with autotuning off and on, in blocks taken in "
        f"turns, {lo['blocks']} each: a block is one iterator, its first pass (a folder's "
        f"files decoded), then {lo['passes']} more.", "",
        md_table(["source", "images a pass", "first pass, off", "first pass, on",
                  "later passes, off", "later passes, on", "later, off / on"], loader_rows,
                 align="lrrrrrr"), "",
        *(f"Reading the training split once at load (3 times each, in turns): {line}." for line
          in reads), "",
        "### The train stage", "",
        f"`python train.py --stages train --train.epochs {ts['epochs']}` in a temporary run "
        "directory, checkouts in turns. Stage s: the `[train] done in` line; epochs end: the "
        "last epoch line's elapsed seconds (counted from just before `fit`); after the epochs: "
        "their difference (the end of `fit`, the last model's evaluation, the saves, the "
        "curve); fit s, train s, held-out s and images/s: `train_result.json` (train s and "
        "held-out s where the checkout records them; images/s over fit s before that, over "
        "train s after).", "",
        md_table(["checkout", "run", "stage s", "epochs end s", "after the epochs s", "fit s",
                  "train s", "held-out s", "images/s"], stage_rows, align="lrrrrrrrr")])
