"""Command line for the model family: `python -m resnet_keras summary [NAME...]`.

Prints one row per model and variant: parameters, trainable parameters,
multiply-adds (paper Table 1's "FLOPs"), depth and output shape; `--json`
gives the same rows as JSON; both come from `resnet_keras.summary`, which
`python -m tools.update_readme` renders docs/training.md's model table from.
"""

import argparse
import json
import sys

from resnet_keras.registry import list_models
from resnet_keras.summary import summary_rows


def render_text(rows) -> str:
    """Renders `resnet_keras.summary.summary_rows` output as an aligned plain-text table."""
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
                              "docs/training.md's Markdown table from them)")
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
