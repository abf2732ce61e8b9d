"""Basic vs bottleneck blocks: parameters, multiply-adds (arXiv 1512.03385, Fig. 5, Table 1).

    python -m experiments.block_table                           # runs/block_table-<time>/
    python -m experiments.block_table --out docs/experiments/block_table

Two tables, every number measured on a built Keras model (`count_params`,
`resnet_keras.count_macs`) and, for single blocks, checked against the
closed-form count (H x W x k x k x C_in x C_out per convolution):

- one block on 56x56 maps (Table 1's conv2_x): the basic block of ResNet-34
  (two 3x3 at 64-d), the bottleneck of ResNet-50 (1x1 256->64, 3x3 64->64,
  1x1 64->256) and a basic block at the bottleneck's 256-d;
- whole nets at 224x224: ResNet-34 (basic), ResNet-50 (bottleneck, the same
  16 blocks) and a 50-layer net of basic blocks, which the registry lacks and
  which is built from a temporary `ModelSpec`.

Writes `block_table.json`, then `block_table.md` rendered from it.
"""

import argparse
import contextlib
import json
import os
import sys
import time

from experiments import paper
from report.markdown import cell, md_table

MAP_SIZE = 56  # conv2_x of Table 1, where the paper's Fig. 5 blocks sit
IMAGE_SIZE = 224

# (label, block kind, input channels, block filters): Fig. 5 left, Fig. 5 right,
# and what Fig. 5 right would cost without its 1x1 reduction.
BLOCKS = (
    ("basic 64-d (ResNet-34 conv2_x)", "basic", 64, 64),
    ("bottleneck 256-d (ResNet-50 conv2_x)", "bottleneck", 256, 64),
    ("basic 256-d (no 1x1 reduction)", "basic", 256, 256),
)

# A 50-layer net of basic blocks needs 24 blocks (2 convs each + stem +
# classifier): ResNet-34's 3-4-6-3 times 1.5, the two half blocks rounded one
# down and one up.
BASIC50_DEPTHS = (4, 6, 9, 5)
NETS = ("resnet34", "basic50", "resnet50")


def block_convs(kind, in_channels, filters):
    """The block's convolutions as (kernel, C_in, C_out), main path only.

    Args:
        kind: `basic` or `bottleneck`.
        in_channels: channels entering the block (equal to those leaving it,
            so the shortcut is the identity).
        filters: the block's filters (a bottleneck's inner width).

    Returns:
        list of (kernel size, input channels, output channels).
    """
    if kind == "basic":
        return [(3, in_channels, filters), (3, filters, filters)]
    return [(1, in_channels, filters), (3, filters, filters), (1, filters, 4 * filters)]


def measure_block(label, kind, in_channels, filters, *, size=MAP_SIZE):
    """One block on `size` x `size` maps: formula and built-model counts.

    Returns:
        dict with the per-convolution multiply-adds per output position,
        `formula_macs`, the built model's `macs` (count_macs) and `params`
        (count_params, BatchNorm included) and `conv_weights`.
    """
    from resnet_keras import count_macs
    from resnet_keras.backend import keras
    from resnet_keras.blocks import Layout, basic_block, bottleneck_block

    convs = block_convs(kind, in_channels, filters)
    per_position = [k * k * cin * cout for k, cin, cout in convs]
    inputs = keras.Input((size, size, in_channels))
    block = basic_block if kind == "basic" else bottleneck_block
    # Layout(): no conv biases (a bias before BatchNorm is redundant), so the
    # parameters are the kernels plus BatchNorm's four vectors per conv.
    outputs = block(inputs, filters, stride=1, layout=Layout(), name="conv2_block1")
    model = keras.Model(inputs, outputs)
    if model.output_shape[-1] != in_channels:
        raise AssertionError(f"{label}: the block must keep {in_channels} channels for an "
                             f"identity shortcut, got {model.output_shape[-1]}")
    return {
        "block": label, "kind": kind, "in_channels": in_channels,
        "out_channels": model.output_shape[-1], "map_size": size,
        "convs": [{"kernel": k, "in": cin, "out": cout, "macs_per_position": m}
                  for (k, cin, cout), m in zip(convs, per_position)],
        "macs_per_position": sum(per_position),
        "formula_macs": size * size * sum(per_position),
        "macs": count_macs(model),
        "conv_weights": sum(per_position),
        "params": model.count_params(),
    }


@contextlib.contextmanager
def temporary_spec(spec):
    """Registers `spec` for the duration of the block, then removes it.

    `build_model` looks nets up by registry name only; this adds a net the
    paper does not have without editing the package.
    """
    from resnet_keras.registry import REGISTRY

    if spec.name in REGISTRY:
        raise ValueError(f"{spec.name} is already registered.")
    REGISTRY[spec.name] = spec
    try:
        yield spec.name
    finally:
        del REGISTRY[spec.name]


def measure_net(name, *, size=IMAGE_SIZE):
    """A whole net at `size` x `size`: parameters, multiply-adds, depth, blocks.

    Args:
        name: a registry name, or `basic50` (built from a temporary spec).
    """
    from resnet_keras import build_model, count_macs
    from resnet_keras.registry import ModelSpec, get_spec

    if name == "basic50":
        base = get_spec("resnet34")
        spec = ModelSpec("basic50", "basic", BASIC50_DEPTHS, base.widths, "imagenet")
        with temporary_spec(spec):
            model = build_model(name, input_shape=(size, size, 3))
    else:
        spec = get_spec(name)
        model = build_model(name, input_shape=(size, size, 3))
    return {
        "model": name, "block": spec.block, "stage_depths": list(spec.depths),
        "blocks": sum(spec.depths), "depth": spec.depth, "in_registry": name != "basic50",
        "params": model.count_params(), "macs": count_macs(model),
        "paper_gmacs": paper.IMAGENET_GMACS.get(name),
    }


def explanation(table):
    """The sentence on why the 1x1 convolutions save cost, from the measured rows."""
    rows = {r["kind"] + str(r["in_channels"]): r for r in table["blocks"]}
    basic64, bottleneck, basic256 = rows["basic64"], rows["bottleneck256"], rows["basic256"]
    nets = {n["model"]: n for n in table["nets"]}
    parts = " + ".join(f"{c['macs_per_position']:,}" for c in bottleneck["convs"])
    three = bottleneck["convs"][1]
    wide = basic256["convs"][0]
    return (
        f"A bottleneck block on 256-d features costs {parts} = "
        f"{bottleneck['macs_per_position']:,} multiply-adds per position "
        f"({bottleneck['macs'] / 1e6:,.1f} M on {bottleneck['map_size']}x"
        f"{bottleneck['map_size']} maps), against {basic256['macs_per_position']:,} "
        f"({basic256['macs'] / 1e6:,.1f} M) for two 3x3 convolutions at 256-d: "
        f"{basic256['macs'] / bottleneck['macs']:.1f}x fewer. The 1x1 convolutions do the "
        f"saving: by reducing to {three['in']} channels they let the 3x3 run at "
        f"{three['macs_per_position']:,} instead of {wide['macs_per_position']:,} "
        f"({wide['macs_per_position'] / three['macs_per_position']:.0f}x less), while the two "
        f"1x1s that reduce and restore the 256 channels cost only "
        f"{bottleneck['convs'][0]['macs_per_position']:,} each. "
        f"So a bottleneck on 256-d features costs "
        f"{bottleneck['macs'] / basic64['macs']:.2f}x a basic block on 64-d "
        f"({basic64['macs'] / 1e6:,.1f} M), which is the paper's \"similar time complexity\" "
        f"(Fig. 5): ResNet-50 has {nets['resnet50']['macs'] / 1e9:.2f} G multiply-adds "
        f"against ResNet-34's {nets['resnet34']['macs'] / 1e9:.2f} G "
        f"({nets['resnet50']['macs'] / nets['resnet34']['macs']:.2f}x) with 4x wider features "
        f"between blocks, while a 50-layer net of basic blocks costs "
        f"{nets['basic50']['macs'] / 1e9:.2f} G and has {nets['basic50']['params'] / 1e6:.1f} M "
        f"parameters against ResNet-50's {nets['resnet50']['params'] / 1e6:.1f} M.")


def measure():
    """The block_table.json dict: block rows, net rows, and the explanation."""
    table = {
        "experiment": "basic vs bottleneck blocks (arXiv 1512.03385, sec. 4.1, Fig. 5, "
                      "Table 1)",
        "blocks": [measure_block(*row) for row in BLOCKS],
        "nets": [measure_net(name) for name in NETS],
        "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    table["formula_matches_count_macs"] = all(
        b["formula_macs"] == b["macs"] for b in table["blocks"])
    table["explanation"] = explanation(table)
    return table


def blocks_table(table):
    """The one-block table of block_table.json as Markdown."""
    rows = [[b["block"],
             ", ".join(f"{c['kernel']}x{c['kernel']} {c['in']}->{c['out']}" for c in b["convs"]),
             cell(b["macs_per_position"], ","), cell(b["formula_macs"], ","),
             cell(b["macs"], ","), cell(b["params"], ",")]
            for b in table["blocks"]]
    return md_table(["block", "convolutions", "multiply-adds per position",
                     "multiply-adds (formula)", "multiply-adds (count_macs)", "parameters"],
                    rows, align="llrrrr")


def nets_table(table):
    """The whole-net table of block_table.json as Markdown."""
    rows = [[n["model"] if n["in_registry"] else f"{n['model']} (not in the paper)",
             n["block"], "-".join(map(str, n["stage_depths"])), n["blocks"], n["depth"],
             cell(n["params"], ","), cell(n["macs"] / 1e9, ".3f", " G"),
             cell(n["paper_gmacs"], "", " G")]
            for n in table["nets"]]
    return md_table(["net", "block", "stage depths", "blocks", "layers", "parameters",
                     "multiply-adds", "paper FLOPs (Table 1)"], rows, align="lllrrrrr")


def render_markdown(table):
    """block_table.md from block_table.json."""
    size = table["blocks"][0]["map_size"]
    return "\n".join([
        "# Basic and bottleneck blocks (paper Fig. 5, Table 1)", "",
        f"## One block on {size}x{size} maps, identity shortcut", "",
        blocks_table(table), "",
        "Parameters include BatchNorm (no conv biases); multiply-adds count "
        "convolutions only, as the paper does.", "",
        f"## Whole nets at {IMAGE_SIZE}x{IMAGE_SIZE} (variant v1, the paper's)", "",
        nets_table(table), "",
        "## Why the 1x1 convolutions save", "", table["explanation"], ""])


def write(table, out):
    """Writes block_table.json and block_table.md into `out`; returns their paths."""
    os.makedirs(out, exist_ok=True)
    paths = (os.path.join(out, "block_table.json"), os.path.join(out, "block_table.md"))
    with open(paths[0], "w") as f:
        json.dump(table, f, indent=2)
    with open(paths[1], "w") as f:
        f.write(render_markdown(table))
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="output folder (default runs/block_table-<time>)")
    args = parser.parse_args(argv)
    out = args.out or os.path.join("runs", f"block_table-{time.strftime('%Y%m%d-%H%M%S')}")
    table = measure()
    if not table["formula_matches_count_macs"]:
        print("error: count_macs disagrees with the closed-form count; see block_table.json",
              file=sys.stderr)
        write(table, out)
        return 1
    for path in write(table, out):
        print(f"wrote {path}")
    print(table["explanation"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
