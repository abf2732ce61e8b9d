"""The degradation experiment's verdict, as data: which pairs of nets reproduce Fig. 6's claims.

Paper (arXiv 1512.03385, sec. 4.1-4.2, Fig. 6): a deeper plain net ends with a
higher training error than a shallower one (degradation), a deeper ResNet with
a lower one (residual learning). Each claim is judged on every pair of nets
trained alike, the same seed and precision, and counted over the seeds per
precision. No sentence is built here: render.py words the data.
"""

from experiments.degradation.labels import NetLabel, precision_name, precision_order
from report import statistics
from resnet_keras.registry import get_spec

# Each claim's expectation: how the other net's final training error ends against the
# reference's. The third is no claim of Fig. 6 itself: the residual net against the plain one
# of the same depth.
EXPECTED = {"degradation": "higher", "residual": "lower", "plain_vs_residual": "lower"}
CLAIMS = tuple(EXPECTED)
# The two claims of Fig. 6 proper: what the run's outcome counts.
FIG6_CLAIMS = ("degradation", "residual")
# A net's training loss (each epoch's running mean) has jumped when it rises from one epoch to
# the next by more than this fraction of its first epoch's loss: the net is thrown a tenth of
# the way back to where it started. Otherwise SGD's epoch means fall, or wobble by hundredths.
LOSS_JUMP = 0.1


def _relation(a, b):
    return "higher" if a > b else "lower" if a < b else "equal"


def _gap(reference, other, split):
    """The paired gap other - reference in error points on `split`, or None without flags.

    Both nets were scored on the same images: `report.statistics` compares
    their accuracies (the reference as reference), and the error gap is that
    difference negated.
    """
    flags = [(net.get("final_correct") or {}).get(split) for net in (reference, other)]
    if not all(flags):
        return None
    reference_right, other_right = ([c == "1" for c in f] for f in flags)
    accuracy = statistics.paired_difference(statistics.paired_counts(reference_right,
                                                                     other_right))
    low, high = accuracy["interval_points"]
    return {"n": accuracy["n"], "only_other_wrong": accuracy["reference_only"],
            "only_reference_wrong": accuracy["variant_only"],
            # 0.0 - x: a zero gap is +0.00, never -0.00.
            "difference_points": 0.0 - accuracy["difference_points"],
            "interval_points": [0.0 - high, 0.0 - low],
            "p_value": accuracy["p_value"], "within_noise": accuracy["within_noise"]}


def compare(curves, reference, other):
    """How net `other` ends against net `reference`, both by their curves.json label.

    Returns:
        dict: `reference`, `other` (the labels), `diverged` (those of the two
        with no finished epoch; when any, nothing else); else their final
        training errors (`reference_train`, `other_train`), training errors
        averaged over the epochs (`*_mean`), final test errors (`*_test`),
        `relation` and `test_relation` (`higher`, `lower` or `equal`: other
        against reference), `train_gap` and `test_gap` (the paired
        comparisons, None without per-image flags), `beyond_noise` and
        `test_beyond_noise` (None without flags).
    """
    result = {"reference": reference, "other": other,
              "diverged": [n for n in (reference, other) if not curves[n]["train_error"]]}
    if result["diverged"]:
        return result
    a, b = curves[reference], curves[other]
    train_gap, test_gap = (_gap(a, b, split) for split in ("train", "test"))
    return {**result,
            "reference_train": a["train_error"][-1], "other_train": b["train_error"][-1],
            "reference_mean": sum(a["train_error"]) / len(a["train_error"]),
            "other_mean": sum(b["train_error"]) / len(b["train_error"]),
            "reference_test": a["test_error"][-1], "other_test": b["test_error"][-1],
            "relation": _relation(b["train_error"][-1], a["train_error"][-1]),
            "test_relation": _relation(b["test_error"][-1], a["test_error"][-1]),
            "train_gap": train_gap, "test_gap": test_gap,
            "beyond_noise": None if train_gap is None else not train_gap["within_noise"],
            "test_beyond_noise": None if test_gap is None else not test_gap["within_noise"]}


def _groups(nets, *, seed):
    """{(seed, precision setting): {model: label}}: the nets trained alike.

    float32 leads, the precision the paper trained in, then the preset's
    (`auto`); within each, the experiment's seed, then the others in order.
    """
    groups = {}
    for net in nets.values():
        groups.setdefault((net.seed, net.precision), {})[net.model] = net.label
    order = sorted(groups, key=lambda g: (g[1] != "float32", g[0] != seed, g[0]))
    return {key: groups[key] for key in order}


def _claim_nets(groups):
    """{claim: {group: (reference label, other label)}} for each group holding a claim's nets.

    Each claim compares the same two models in every group, so that its pairs
    can be counted over the seeds: degradation and residual learning the
    shallowest and the deepest of their kind in the whole run; plain against
    residual the two kinds at the greatest depth the run has both of, where
    Fig. 6's gap is widest.
    """
    specs = {model: get_spec(model) for group in groups.values() for model in group}

    def shallowest_and_deepest(residual):
        kind = sorted((m for m, s in specs.items() if s.residual == residual),
                      key=lambda m: specs[m].depth)
        return (kind[0], kind[-1]) if len(kind) > 1 else None

    def both_kinds_deepest():
        by_kind = {(s.residual, s.depth): m for m, s in specs.items()}
        shared = [depth for residual, depth in by_kind if residual and (False, depth) in by_kind]
        return (by_kind[False, max(shared)], by_kind[True, max(shared)]) if shared else None

    models = {"degradation": shallowest_and_deepest(False),
              "residual": shallowest_and_deepest(True),
              "plain_vs_residual": both_kinds_deepest()}
    nets = {claim: {} for claim in CLAIMS}
    for key, group in groups.items():
        for claim, pair in models.items():
            if pair and all(m in group for m in pair):
                nets[claim][key] = tuple(group[m] for m in pair)
    return nets


def _pair(curves, nets, group, *, claim):
    """One group's test of `claim`: `compare`'s dict with the group and the outcome.

    A pair reproduces the claim when the other net ends on the expected side
    of the reference and, where per-image flags were kept, beyond the noise
    (the paired interval excludes 0). None when a net diverged before its
    first epoch ended.
    """
    (seed, setting), (reference, other) = group, nets
    check = compare(curves, reference, other)
    names = {precision_name(curves[n], precision=setting) for n in nets}
    reproduced = None if check["diverged"] else (
        check["relation"] == EXPECTED[claim] and check["beyond_noise"] is not False)
    # Two precisions only where a resumed run trained its nets on different machines.
    return {"seed": seed, "precision": names.pop() if len(names) == 1 else "mixed",
            "models": [NetLabel.parse(n, seed=seed).model for n in nets], **check,
            "expected": EXPECTED[claim], "reproduced": reproduced,
            # The reference fits every training image already: no net can end lower.
            "floor": EXPECTED[claim] == "lower" and check.get("reference_train") == 0}


def _claim(pairs):
    """A claim over its pairs: counts overall and, per precision, the seeds that reproduce it.

    Returns:
        dict: `pairs`; `judged` and `reproduced_pairs` (counts); `reproduced`
        (True when every judged pair reproduces it, None when none could be
        judged); `by_precision`, one dict per precision (float32 first):
        `precision`, `seeds` (judged), `reproduced_seeds`, `unjudged_seeds`.
    """
    judged = [p for p in pairs if p["reproduced"] is not None]
    by_precision = []
    for name in sorted({p["precision"] for p in pairs}, key=precision_order):
        mine = [p for p in pairs if p["precision"] == name]
        by_precision.append({
            "precision": name,
            "seeds": [p["seed"] for p in mine if p["reproduced"] is not None],
            "reproduced_seeds": [p["seed"] for p in mine if p["reproduced"]],
            "unjudged_seeds": [p["seed"] for p in mine if p["reproduced"] is None]})
    return {"pairs": pairs, "judged": len(judged),
            "reproduced_pairs": sum(p["reproduced"] for p in judged),
            "reproduced": all(p["reproduced"] for p in judged) if judged else None,
            "by_precision": by_precision}


def _twins(curves, nets, *, vary, seed):
    """`compare` of each two nets of one model that differ only in `vary` (`seed` or `precision`).

    Each kind's reference is its net in the experiment's seed, or in the
    preset's precision (`auto`); the others are compared with it. Rows run by
    model, then by what the nets share (float32 first, the experiment's seed
    first), in whatever order `--models` listed them.
    """
    def side(name, net):
        return {f"{name}_seed": net.seed,
                f"{name}_precision": precision_name(curves[net.label], precision=net.precision)}

    def order(net):
        seeds = (net.seed != seed, net.seed)
        if vary == "seed":
            return (net.model, net.precision != "float32", *seeds)
        return (net.model, *seeds, net.precision == "float32")

    comparisons, first = [], {}
    for net in sorted(nets.values(), key=order):
        key = (net.model, net.precision if vary == "seed" else net.seed)
        reference = first.setdefault(key, net)
        if getattr(reference, vary) != getattr(net, vary):
            comparisons.append({"model": net.model, **side("reference", reference),
                                **side("other", net),
                                **compare(curves, reference.label, net.label)})
    return comparisons


def loss_jumps(curves, nets):
    """Per precision, the nets whose training loss jumped (`LOSS_JUMP`) from one epoch to the next.

    Whether 16-bit arithmetic makes a jump likelier: with two precisions,
    Fisher's exact test of their two proportions. Nets whose curves did not
    record the loss are left out.

    Returns:
        dict: `threshold`; `by_precision`, float32 first: `precision`, `nets`
        (how many), `jumps` (each jumped net's largest: `run`, `epoch`, the
        loss `before` and `after`); `fisher_p` (two-sided; None unless two
        precisions).
    """
    groups = {}
    for net in nets.values():
        c = curves[net.label]
        if not c.get("loss"):
            continue
        name = precision_name(c, precision=net.precision)
        group = groups.setdefault(name, {"precision": name, "nets": 0, "jumps": []})
        group["nets"] += 1
        rises = [(after - before, epoch, before, after) for epoch, before, after
                 in zip(c["epoch"][1:], c["loss"], c["loss"][1:])
                 if after - before > LOSS_JUMP * c["loss"][0]]
        if rises:
            _, epoch, before, after = max(rises)
            group["jumps"].append({"run": net.label, "epoch": epoch, "before": before,
                                   "after": after})
    by_precision = [groups[name] for name in sorted(groups, key=precision_order)]
    fisher_p = None
    if len(by_precision) == 2:
        fisher_p = statistics.fisher_exact_p(*(n for g in by_precision
                                               for n in (len(g["jumps"]), g["nets"])))
    return {"threshold": LOSS_JUMP, "by_precision": by_precision, "fisher_p": fisher_p}


def verdict(curves, *, seed=0):
    """Judges the paper's Fig. 6 claims on every pair of nets trained alike.

    Plain nets: does the deepest end with a higher training error than the
    shallowest (degradation, paper sec. 4.1-4.2)? Residual nets: does the
    deepest end with a lower one? And at the greatest depth both kinds share,
    does the residual net end lower than the plain one? Nets trained twice, with
    two seeds or in bfloat16 and float32, are compared with each other too: the
    seed-to-seed gap is the noise a claim's gap must stand out from, and the
    precision gap says whether 16-bit arithmetic costs the deep nets; and each
    precision's nets whose training loss jumped say whether it throws nets back.

    Args:
        curves: {net label (`NetLabel`): dict with per-epoch `train_error` and
            `test_error` lists in %, `final_correct` (per-image flags, or
            absent), `epoch` and `loss` (or absent) and `precision` (the
            policy, or absent), as curves.json holds them}; models must be
            registered. Without flags a gap's noise is not tested.
        seed: the experiment's seed, a label's without `@seedN`.

    Returns:
        dict: `degradation`, `residual`, `plain_vs_residual` (each `_claim`'s
        dict, whose `pairs` are `compare`'s dicts with `seed`, `precision`,
        `models`, `expected`, `reproduced` and `floor`; None when no group
        holds the nets to compare); `seed_twins` and `precision_twins`
        (`compare`'s dicts with `model` and each side's `seed` and
        `precision`); `loss_jumps` (`loss_jumps`'s dict); `fig6` (`judged`
        and `reproduced`: the names of Fig. 6's claims that could be judged,
        and of those that every judged pair reproduces); `seeds` (every seed
        trained); `paired` (whether any gap was tested image by image).
    """
    nets = {label: NetLabel.parse(label, seed=seed) for label in curves}
    groups = _groups(nets, seed=seed)
    claim_nets = _claim_nets(groups)
    result = {}
    for claim in CLAIMS:
        pairs = [_pair(curves, pair, group, claim=claim)
                 for group, pair in claim_nets[claim].items()]
        result[claim] = _claim(pairs) if pairs else None
    result["seed_twins"] = _twins(curves, nets, vary="seed", seed=seed)
    result["precision_twins"] = _twins(curves, nets, vary="precision", seed=seed)
    result["loss_jumps"] = loss_jumps(curves, nets)
    judged = [c for c in FIG6_CLAIMS if result[c] and result[c]["reproduced"] is not None]
    result["fig6"] = {"judged": judged, "reproduced": [c for c in judged
                                                       if result[c]["reproduced"]]}
    result["seeds"] = sorted({net.seed for net in nets.values()})
    result["paired"] = any(p.get("train_gap") for c in CLAIMS if result[c]
                           for p in result[c]["pairs"])
    return result
