"""The degradation experiment's curves.csv, results.md and degradation.png, rendered from its JSON.

Every number and sentence comes from curves.json or summary.json (whose
verdict verdict.py decided); the figure has the layout of the paper's Fig. 6
(arXiv 1512.03385, sec. 4.2).
"""

import csv
import os

from experiments.degradation.labels import NetLabel, precision_name, precision_order
from experiments.degradation.verdict import FIG6_CLAIMS
from report import statistics
from report.markdown import cell, interval_words, md_table, p_words

CSV_COLUMNS = ("model", "epoch", "train_error", "train_error_running", "test_error", "loss",
               "lr", "seconds")
TITLES = {"degradation": "Degradation (Fig. 6 left: the deeper plain net trains worse)",
          "residual": "Residual learning (Fig. 6 right: the deeper ResNet trains better)",
          "plain_vs_residual": "Plain against residual at equal depth"}


def write_csv(curves, run_dir):
    """Writes `curves.csv`, one row per net and epoch, from curves.json's dict."""
    with open(os.path.join(run_dir, "curves.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for name, c in curves.items():
            for i in range(len(c["epoch"])):
                writer.writerow([name] + [c[k][i] for k in CSV_COLUMNS[1:]])


# ---------------------------------------------------------------- the run in words


def results_table(summary):
    """The Markdown table of final errors, one row per net, from summary.json."""
    paper_column = summary["dataset"] == "cifar10"
    headers = ["net", "shortcuts", "layers", "params", "epochs", "training error %",
               "test error %", *(["paper test error % (Table 6)"] if paper_column else []),
               "seconds"]
    rows = [[net.get("run", net["model"]), "identity (A)" if net["residual"] else "none (plain)",
             net["depth"], cell(net["params"], ","), net["epochs"],
             cell(net["train_error"], ".2f"), cell(net["test_error"], ".2f"),
             *([cell(net["paper_test_error"], ".2f")] if paper_column else []),
             cell(net["seconds"], ".0f")]
            for net in summary["nets"]]
    return md_table(headers, rows, align="llrrrrr" + "r" * paper_column + "r")


def error_grid(summary):
    """Every net's final training error % (its test error % in brackets): a caption and a table.

    A row per model, plain before residual and shallow before deep; a column
    per precision and seed, float32 first: each seed of a net reads across.
    """
    def column(net):
        label = NetLabel.parse(net.get("run", net["model"]), seed=summary["seed"])
        return precision_name(net, precision=label.precision), label.seed

    nets = {(net["model"], column(net)): net for net in summary["nets"]}
    shape = {net["model"]: (net["residual"], net["depth"]) for net in summary["nets"]}
    columns = sorted({c for _, c in nets}, key=lambda c: (precision_order(c[0]), c[1]))
    rows = [[model] + [_grid_cell(nets.get((model, c))) for c in columns]
            for model in sorted(shape, key=shape.get)]
    table = md_table(["net", *(f"{_precision_cell(name)}, seed {seed}"
                               for name, seed in columns)], rows, align="l" + "r" * len(columns))
    return f"Final training error % (test error %) by seed and precision:\n\n{table}"


def _precision_cell(name):
    """A `precision_name` in a table or a count: `float32`, or words where none was recorded."""
    return name or "precision not recorded"


def _grid_cell(net):
    if net is None:
        return cell(None)
    return f"{cell(net['train_error'], '.2f')} ({cell(net['test_error'], '.2f')})"


def schedule_words(summary):
    """The learning-rate schedule of a summary.json in words."""
    r = summary["recipe"]
    steps, epochs = r.get("warmup_steps", 0), summary["warmup_epochs"]
    length = f"{steps} steps" if steps else f"{epochs:g} epoch{'s' if epochs != 1 else ''}"
    # Summaries from before train.warmup_shape held the tenth on the step schedule.
    shape = r.get("warmup_shape", "linear" if r["schedule"] == "cosine" else "constant")
    if r["schedule"] == "cosine":
        return (f"linear warmup from a tenth over {length}, then cosine decay"
                if steps or epochs else "cosine decay")
    parts = []
    if steps or epochs:
        parts.append(f"warmup rising linearly from a tenth over {length}" if shape == "linear"
                     else f"warmup at a tenth for {length}")
    if summary["lr_decay_epochs"]:
        parts.append("divided by 10 after epochs "
                     + " and ".join(f"{e:g}" for e in summary["lr_decay_epochs"]))
    return ", ".join(parts) or "constant"


def _seed_words(summary):
    seeds = sorted({n.get("seed", summary["seed"]) for n in summary["nets"]})
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    return (f"seed {summary['seed']} (the @seedN rows: seed N; "
            f"seeds {', '.join(map(str, seeds))} in all)")


def _precision_words(summary):
    """`, trained in mixed_bfloat16 (CPU with AVX512-BF16), the @float32 rows in float32`;
    nothing for runs that did not record it. A policy chosen for several reasons (worded by
    different versions) is named once, with its reasons."""
    def tagged(net):
        label = NetLabel.parse(net.get("run", net["model"]), seed=summary["seed"])
        return label.precision == "float32"

    reasons = {}
    for n in summary["nets"]:
        if n.get("precision") and not tagged(n):
            reasons.setdefault(n["precision"]["policy"], set()).add(n["precision"]["reason"])
    return ("".join(f", trained in {policy} ({'; '.join(sorted(reasons[policy]))})"
                    for policy in sorted(reasons))
            + (", the @float32 rows in float32" if any(map(tagged, summary["nets"])) else ""))


# ---------------------------------------------------------------- the verdict in words


def _seeds(seeds):
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def claim_counts(claim):
    """Per precision, how many seeds reproduce a claim: `float32: 2 of 3 seeds (seeds 0, 1)`.

    Args:
        claim: one claim of summary.json's verdict (not None).

    Returns:
        str, the precisions joined by `; `, float32 first.
    """
    parts = []
    for p in claim["by_precision"]:
        judged, reproduced = p["seeds"], p["reproduced_seeds"]
        words = (f"{_precision_cell(p['precision'])}: {len(reproduced)} of "
                 f"{len(judged)} seed{'s' if len(judged) != 1 else ''}")
        if reproduced:
            words += f" ({_seeds(reproduced)})"
        if p["unjudged_seeds"]:
            words += f", {_seeds(p['unjudged_seeds'])} not judged (a net diverged)"
        parts.append(words)
    return "; ".join(parts)


def _claim_sentence(name, claim):
    """The claim's outcome over its pairs, e.g. `...: reproduced in 2 of 3 pairs, ...`."""
    if claim is None:
        return f"{TITLES[name]}: not tested (it needs two depths of that kind of net)."
    n, k = claim["judged"], claim["reproduced_pairs"]
    models = {tuple(p["models"]) for p in claim["pairs"]}
    nets = f", {' against '.join(reversed(models.pop()))}" if len(models) == 1 else ""
    if not n:
        outcome = "cannot be judged: a net of each pair diverged before its first epoch ended"
    elif k == n:
        outcome = "reproduced" + {1: "", 2: " in both pairs of nets trained alike"}.get(
            n, f" in all {n} pairs of nets trained alike")
    elif k == 0:
        outcome = "not reproduced" + (f" in any of its {n} pairs" if n > 1 else "")
    else:
        outcome = f"reproduced in {k} of {n} pairs of nets trained alike, so not in every one"
    return f"{TITLES[name]}{nets}: {outcome}. Per precision: {claim_counts(claim)}."


def _difference(gap):
    if gap is None:
        return cell(None)
    interval = interval_words(gap["interval_points"], statistics.DEFAULT_CONFIDENCE)
    return f"{gap['difference_points']:+.2f} ({interval})"


def _comparison_cells(c):
    """The cells every comparison shows, `other` against `reference`, from `verdict.compare`."""
    if c["diverged"]:
        return [cell(None)] * 6
    return [f"{c['other_train']:.2f} vs {c['reference_train']:.2f}", _difference(c["train_gap"]),
            cell(c["train_gap"] and p_words(c["train_gap"]["p_value"])),
            f"{c['other_mean']:.2f} vs {c['reference_mean']:.2f}",
            f"{c['other_test']:.2f} vs {c['reference_test']:.2f}", _difference(c["test_gap"])]


COMPARISON_HEADERS = ["training error %", "difference (points)", "McNemar",
                      "mean training error over the epochs %", "test error %",
                      "test difference (points)"]


def _outcome_cell(pair):
    if pair["reproduced"] is None:
        return f"not judged: {' and '.join(pair['diverged'])} diverged before its first epoch"
    if pair["reproduced"]:
        return "yes"
    if pair["floor"]:
        return f"no ({pair['reference']} fits every training image: no net can end lower)"
    if pair["relation"] == pair["expected"]:
        return "no (within the noise: the 95% interval contains 0)"
    return f"no ({pair['relation'] if pair['relation'] != 'equal' else 'the same error'})"


def _pairs_table(claim):
    rows = [[p["seed"], p["precision"] or cell(None), " vs ".join(reversed(p["models"])),
             *_comparison_cells(p), _outcome_cell(p)] for p in claim["pairs"]]
    return md_table(["seed", "precision", "nets", *COMPARISON_HEADERS, "reproduced"], rows,
                    align="rll" + "r" * len(COMPARISON_HEADERS) + "l")


def _noise_cell(c):
    gaps = [] if c["diverged"] else [c["train_gap"], c["test_gap"]]
    if not any(gaps):
        return cell(None)
    return ", ".join("no" if g["within_noise"] else "yes" for g in gaps)


def _twins_table(twins, *, vary):
    """Nets of one model trained twice: `vary` (`seed` or `precision`) names the difference."""
    same = "precision" if vary == "seed" else "seed"
    rows = [[t["model"], cell(t[f"reference_{same}"]),
             f"{cell(t[f'other_{vary}'])} vs {cell(t[f'reference_{vary}'])}",
             *_comparison_cells(t), _noise_cell(t)] for t in twins]
    return md_table(["net", same, f"{vary}s", *COMPARISON_HEADERS,
                     "beyond the noise (training, test)"], rows,
                    align="lll" + "r" * len(COMPARISON_HEADERS) + "l")


def _jumps_sentence(jumps):
    """Each precision's nets whose training loss jumped, and Fisher's test; None without losses."""
    if not jumps or not jumps["by_precision"]:
        return None

    def jumped(j):
        return f"{j['run']}, epoch {j['epoch']}: {j['before']:.3f} to {j['after']:.3f}"

    parts = [f"{_precision_cell(g['precision'])} {len(g['jumps'])} of {g['nets']} "
             f"net{'s' if g['nets'] > 1 else ''}"
             + (f" ({'; '.join(map(jumped, g['jumps']))})" if g["jumps"] else "")
             for g in jumps["by_precision"]]
    test = ""
    if jumps["fisher_p"] is not None:
        names = " against ".join(g["precision"] or "not recorded" for g in jumps["by_precision"])
        test = f" Fisher's exact test, {names}: {p_words(jumps['fisher_p'])}."
    return (f"Training-loss jumps, a rise from one epoch to the next by more than "
            f"{jumps['threshold']:.0%} of the first epoch's loss: {'; '.join(parts)}.{test}")


def _outcome_sentence(fig6):
    judged, reproduced = len(fig6["judged"]), len(fig6["reproduced"])
    if not judged:
        return "Neither of Fig. 6's two claims could be judged in this run."
    if judged == 1:
        return (f"The one Fig. 6 claim judged {'holds' if reproduced else 'does not hold'} in "
                f"every pair judged.")
    return {2: "Both of Fig. 6's claims hold in every pair judged.",
            1: "One of Fig. 6's two claims holds in every pair judged, the other does not.",
            0: "Neither of Fig. 6's two claims holds in every pair judged."}[reproduced]


def _noise_sentence(summary):
    verdict, n_train, n_test = summary["verdict"], summary["num_train"], summary["num_test"]
    *others, last = map(str, verdict["seeds"])
    return ((f"Seeds {', '.join(others)} and {last}" if others else "One seed only")
            + f"; one training image is {100 / n_train:.3f} points of training error, so "
            f"differences of a few images can be chance: "
            + (f"a gap counts only when the 95% interval of the paired difference excludes 0 "
               f"({statistics.INTERVAL_METHOD}, on the same {n_train:,} training and {n_test:,} "
               f"test images for every net)."
               if verdict["paired"] else
               "no per-image results were kept, so no gap's noise was tested."))


def _shown_claims(verdict):
    """The claims to word: Fig. 6's two always (one untested says so), the third when tested."""
    return [name for name in TITLES if verdict[name] is not None or name in FIG6_CLAIMS]


def headlines(summary):
    """Each claim's outcome and the run's, one sentence each: what the command prints at the end."""
    verdict = summary["verdict"]
    return ([_claim_sentence(name, verdict[name]) for name in _shown_claims(verdict)]
            + [_outcome_sentence(verdict["fig6"])])


def verdict_markdown(summary):
    """The verdict of a summary.json in Markdown: each claim's outcome and its pairs, the twins.

    Returns:
        str, paragraphs and tables without a heading.
    """
    verdict = summary["verdict"]
    blocks = []
    for name in _shown_claims(verdict):
        claim = verdict[name]
        blocks.append(_claim_sentence(name, claim))
        if claim is not None:
            blocks.append(_pairs_table(claim))
    if verdict["seed_twins"]:
        blocks += ["Seed to seed, the same net in the same precision: the noise a claim's gap "
                   "must stand out from.", _twins_table(verdict["seed_twins"], vary="seed")]
    if verdict["precision_twins"]:
        blocks += ["Precision against precision, the same net and seed: whether 16-bit "
                   "arithmetic costs the nets.",
                   _twins_table(verdict["precision_twins"], vary="precision")]
    if jumps := _jumps_sentence(verdict.get("loss_jumps")):
        blocks.append(jumps)
    blocks.append(f"{_outcome_sentence(verdict['fig6'])} {_noise_sentence(summary)}")
    return "\n\n".join(blocks)


def render_results(summary):
    """results.md from summary.json: the table of final errors and the verdict."""
    paper_column = summary["dataset"] == "cifar10"
    r = summary["recipe"]
    lines = [
        f"# Degradation on {summary['dataset']} (paper Fig. 6)", "",
        f"{summary['num_train']:,} training and {summary['num_test']:,} test images; every "
        f"net: {r['epochs']} epochs, batch {r['batch_size']}, SGD momentum {r['momentum']}, "
        f"lr {r['learning_rate']:g} ({schedule_words(summary)}), weight decay "
        f"{r['weight_decay']:g}, augmentation {'on' if r['augment'] else 'off'}, "
        f"{_seed_words(summary)}{_precision_words(summary)}. Training error: "
        f"{summary['training_error']}. Whole run "
        f"{summary['wall_seconds']:.0f} s on {summary['machine']}.", "",
    ]
    lines.append(results_table(summary))
    for n in summary["nets"]:
        if n["diverged_at"]:
            lines.append(f"\n{n.get('run', n['model'])} diverged (NaN loss) at epoch "
                         f"{n['diverged_at'][0]}, step {n['diverged_at'][1]}; its row is its "
                         f"last finite epoch.")
    if paper_column:
        lines += ["", "The paper reports the plain nets' errors only as curves (Fig. 6), so "
                      "their paper column is empty."]
    lines += ["", error_grid(summary), "", "## Verdict", "", verdict_markdown(summary), "",
              "![training and test error of each run](degradation.png)", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- the figure


# A line style per seed (in the order of the seeds drawn); a marker on every epoch of a
# 16-bit net, none on a float32 one; so two curves of one colour never look alike.
_SEED_STYLES = ("-", "--", "-.", (0, (1, 1.5)), (0, (5, 1, 1, 1, 1, 1)))
_MARKERS = {"bfloat16": "o", "float16": "s"}
_MARKER_WORDS = {"o": "dots", "s": "squares"}


def _curve_traits(curves, *, seed):
    """{label: (kind in words, depth, seed, precision name)} of every net with a finished epoch."""
    traits = {}
    for label, c in curves.items():
        net = NetLabel.parse(label, seed=seed)
        if c["epoch"]:
            traits[label] = ("ResNet" if c["residual"] else "plain", c["depth"], net.seed,
                             precision_name(c, precision=net.precision))
    return traits


def _title(dataset, traits, *, means):
    notes = ["a line style per seed"]
    notes += [f"{_MARKER_WORDS[_MARKERS[p]]} on {p}"
              for p in sorted({t[3] for t in traits.values()} & set(_MARKERS))]
    if means:
        notes.append("bold the mean over the float32 seeds of both depths")
    return f"{dataset}: training and test error of every run ({'; '.join(notes)})"


def plot(curves, path, *, dataset, seed=0):
    """degradation.png in the layout of paper Fig. 6, every net told apart.

    One column per claim (plain nets, ResNets), training error above and test
    error below; one colour per depth, a line style per seed, a dot on every
    epoch of a bfloat16 net, each named in the legend by kind, depth, seed
    and precision; bold, each depth's mean over the float32 seeds that every
    depth of its column has, the seeds its claim is judged on, where there
    are two or more.

    Args:
        curves: curves.json's dict.
        path: the PNG to write.
        dataset: its name, for the title.
        seed: the experiment's seed, a label's without `@seedN`.

    Returns:
        The matplotlib `Figure`, as written.
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    traits = _curve_traits(curves, seed=seed)
    depths = sorted({t[1] for t in traits.values()})
    palette = ["tab:orange", "tab:blue", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    color = {d: palette[i % len(palette)] for i, d in enumerate(depths)}
    seeds = sorted({t[2] for t in traits.values()})
    style = {s: _SEED_STYLES[i % len(_SEED_STYLES)] for i, s in enumerate(seeds)}
    fig = Figure(figsize=(12, 8.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2, sharey="row", sharex=True)
    means = False
    for column, (kind, heading) in enumerate((("plain", "plain nets"), ("ResNet", "ResNets"))):
        nets = sorted((label for label, t in traits.items() if t[0] == kind),
                      key=lambda label: (*traits[label][1:3], str(traits[label][3])))
        for row, key in enumerate(("train_error", "test_error")):
            ax = axes[row][column]
            for label in nets:
                _, depth, net_seed, precision = traits[label]
                ax.plot(curves[label]["epoch"], curves[label][key], color=color[depth], lw=0.9,
                        alpha=0.8, ls=style[net_seed], marker=_MARKERS.get(precision),
                        markersize=2.5, label=f"{kind}-{depth}, seed {net_seed}"
                              + (f", {precision}" if precision else ""))
            epochs = curves[nets[0]]["epoch"] if nets else []
            float32 = {depth: {} for depth in sorted({traits[label][1] for label in nets})}
            for label in nets:
                if traits[label][3] == "float32" and len(curves[label][key]) == len(epochs):
                    float32[traits[label][1]][traits[label][2]] = curves[label][key]
            # The seeds the panel's claim is judged on: those every depth has in float32.
            shared = sorted(set.intersection(*map(set, float32.values()))) if float32 else []
            if len(shared) >= 2:
                means = True
                for depth, by_seed in float32.items():
                    ax.plot(epochs, np.mean([by_seed[s] for s in shared], axis=0),
                            color=color[depth], lw=2.6,
                            label=f"{kind}-{depth}, mean of float32 seeds "
                                  f"{', '.join(map(str, shared))}")
            ax.set(title=f"{heading}: {'training' if row == 0 else 'test'} error")
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(fontsize=6.5, ncol=1)
        axes[1][column].set_xlabel("epoch")
    for row, key in enumerate(("train_error", "test_error")):
        late = [e for c in curves.values() for e in c[key][len(c[key]) // 4:]]
        # Zoom on the later epochs, where the nets separate; the first epochs'
        # errors near 90% would flatten every difference that matters.
        top = min(100.0, 1.15 * max(late)) if late and max(late) > 0 else 1.0
        axes[row][0].set_ylim(0, max(top, 1.0))
        axes[row][0].set_ylabel("error (%)")
    fig.suptitle(_title(dataset, traits, means=means))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def render(summary, curves, out):
    """Writes curves.csv, results.md and degradation.png into `out` from the two JSON dicts."""
    write_csv(curves, out)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(render_results(summary))
    plot(curves, os.path.join(out, "degradation.png"), dataset=summary["dataset"],
         seed=summary["seed"])
