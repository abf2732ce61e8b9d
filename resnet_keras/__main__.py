"""Command line for the model family: `python -m resnet_keras summary [NAME...]`.

Prints one row per model and variant: parameters, trainable parameters,
multiply-adds (paper Table 1's "FLOPs"), depth and output shape; `--json`
gives the same rows as JSON (`python -m tools.update_readme` renders
README.md's model table from `summary_rows`).
"""

import argparse
import json
import sys

from resnet_keras.macs import count_macs
from resnet_keras.models import SHORTCUTS, VARIANTS, build_model
from resnet_keras.registry import get_spec, list_models

COLUMNS = ("name", "variant", "params", "trainable_params", "macs", "depth", "output_shape")


def _variants(name):
    spec = get_spec(name)
    if spec.family == "cifar":
        return [("shortcut", s) for s in SHORTCUTS]
    return [("variant", v) for v in VARIANTS[spec.family]]


def summary_rows(names=None):
    """Builds each model and variant and measures it.

    Args:
        names: list of registry names; None means all of them.

    Returns:
        list of dicts with the keys in `COLUMNS`.
    """
    rows = []
    for name in names or list_models():
        for option, value in _variants(name):
            model = build_model(name, **{option: value})
            rows.append({
                "name": name,
                "variant": value,
                "params": model.count_params(),
                "trainable_params": int(sum(w.shape.num_elements()
                                            for w in model.trainable_weights)),
                "macs": count_macs(model),
                "depth": get_spec(name).depth,
                "output_shape": list(model.output_shape[1:]),
                "input_shape": list(model.input_shape[1:]),
            })
    return rows


def render_text(rows) -> str:
    """Renders `summary_rows` output as an aligned plain-text table."""
    header = f"{'model':<12} {'variant':<8} {'params':>12} {'trainable':>12} {'MACs':>10} " \
             f"{'depth':>5}  output"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['name']:<12} {r['variant']:<8} {r['params']:>12,} "
                     f"{r['trainable_params']:>12,} {r['macs'] / 1e9:>9.3f}G {r['depth']:>5}  "
                     f"{tuple(r['output_shape'])}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resnet_keras", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    summary = sub.add_parser("summary", help="table of models: params, MACs, depth")
    summary.add_argument("names", nargs="*",
                         help=f"models (default all): {', '.join(list_models())}")
    summary.add_argument("--json", action="store_true",
                         help="print a JSON list of rows (`python -m tools.update_readme` renders "
                              "README.md's Markdown table from them)")
    args = parser.parse_args(argv)
    try:
        rows = summary_rows(args.names)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(render_text(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
