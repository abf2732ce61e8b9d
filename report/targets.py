"""Where a file may ship: the deployment targets, each with the runtime that proves it runs there.

A file counts as running on a target only when that target's own runtime ran
it, whole, on test images and agreed with LiteRT on the CPU; for the Coral
Edge TPU, which no machine here has, the proof is the compiler where it is on
PATH, else the Edge TPU's published op rules, and the report says which.
The report stage saves each runtime's answer in the file's report.json entry
under the target's `evidence` key; `runs_there` reads it the same way for
the decision (report/decide.py) and the renderers. Adding a target is one row
of `TARGETS` and one reader.

    >>> runs_there(BY_NAME["android_gpu"], entry)
    {'runs': False, 'proof': 'ran', 'runtime': 'MediaPipe 0.10.35, ...', 'reason': '...'}
"""

import dataclasses

# The least share of the checked images on which a device runtime's top-1 must equal
# LiteRT's on the CPU: below it the file runs there but computes something else (a
# wrong input conversion, a kernel's bug), which is not a file that works there.
MIN_AGREEMENT = 0.95


@dataclasses.dataclass(frozen=True)
class Target:
    """One deployment target.

    Attributes:
        name: the key in `--report.targets`, report.json and `bundles/<name>/`.
        title: the name a reader knows it by.
        runtime: what runs a file there, in the report's words.
        evidence: the key of a report.json variant entry that holds that runtime's answer.
    """

    name: str
    title: str
    runtime: str
    evidence: str


TARGETS = (
    Target("android_cpu", "Android CPU",
           "MediaPipe Tasks ImageClassifier on the CPU (XNNPACK), as tasks-vision on Android",
           "mediapipe_cpu"),
    Target("android_gpu", "Android GPU",
           "MediaPipe Tasks ImageClassifier with Delegate.GPU: TensorFlow Lite's GPU delegate "
           "on OpenGL ES", "gpu_delegate"),
    Target("edgetpu", "Coral Edge TPU",
           "edgetpu_compiler where on PATH, else the Edge TPU's op rules and versions",
           "edgetpu"),
    Target("litert_cpu", "LiteRT on any CPU", "the LiteRT interpreter (ai_edge_litert)",
           "litert"),
)
NAMES = tuple(target.name for target in TARGETS)
# The evidence MediaPipe's environment gives (export/mediapipe_client.py), where it is built.
MEDIAPIPE_EVIDENCE = ("mediapipe_cpu", "gpu_delegate")
BY_NAME = {target.name: target for target in TARGETS}


def check_targets(names):
    """The targets named, in `TARGETS` order.

    Raises:
        ValueError: an unknown or repeated name; the message lists the valid ones.
    """
    names = tuple(names)
    unknown = [name for name in names if name not in BY_NAME]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(f"report.targets must name each target once, from "
                         f"{', '.join(NAMES)}; got {', '.join(names) or 'none'}.")
    return tuple(target for target in TARGETS if target.name in names)


def edgetpu_status(edgetpu):
    """What an `edgetpu` check (export.edgetpu.check) says about one file.

    Args:
        edgetpu: a variant's `edgetpu` dict, or None.

    Returns:
        None when the file was not checked; otherwise a dict: `compatible`
        (bool), `total_ops`, `first_cpu_op` (`index`, `op`, `reason` of the
        first op left to the CPU, or None), `confirmed_by` (`compiler` when
        edgetpu_compiler ran and counted mapped ops, else `rules`),
        `compiler_version`, `mapped_ops` and `compiler_total_ops` (None
        unless the compiler confirmed).
    """
    if not edgetpu:
        return None
    ops = edgetpu.get("ops") or []
    first = edgetpu.get("first_cpu_op")
    compiler = edgetpu.get("compiler") or {}
    confirmed = bool(compiler.get("ran")) and compiler.get("mapped_ops") is not None
    return {
        "compatible": bool(edgetpu.get("compatible")),
        "total_ops": edgetpu.get("total_ops", len(ops)),
        "first_cpu_op": ({key: ops[first][key] for key in ("index", "op", "reason")}
                         if first is not None and first < len(ops) else None),
        "confirmed_by": "compiler" if confirmed else "rules",
        "compiler_version": compiler.get("version") if confirmed else None,
        "mapped_ops": compiler["mapped_ops"] if confirmed else None,
        "compiler_total_ops": compiler.get("total_ops") if confirmed else None,
    }


def runs_there(target, entry, *, not_checked="not checked"):
    """Whether `target`'s runtime ran the file of `entry`, whole and right.

    Args:
        target: a `Target`.
        entry: the file's report.json variant entry.
        not_checked: str, the reason to give where the runtime never saw the file.

    Returns:
        dict: `runs` (True, False, or None where not checked), `proof` (`ran`,
        `compiler` or `rules`), `runtime` (the runtime and its version, or
        None) and `reason` (why it does not run, one line; None where it runs).
    """
    evidence = entry.get(target.evidence)
    if not evidence:
        return {"runs": None, "proof": None, "runtime": None, "reason": not_checked}
    return _READERS[target.evidence](evidence)


def _agreeing_run(evidence, *, runtime, against):
    """A run on a device's runtime: it ran every image and agreed with `against`."""
    facts = {"proof": "ran", "runtime": runtime, "reason": None}
    if not evidence.get("ran"):
        return {**facts, "runs": False, "reason": evidence.get("error") or "it did not run"}
    agreement = evidence.get("agreement")
    if agreement is not None and agreement < MIN_AGREEMENT:
        return {**facts, "runs": False,
                "reason": f"it runs, but its top-1 equals {against}'s on only "
                          f"{agreement:.0%} of {evidence.get('images')} images"}
    return {**facts, "runs": True}


def _mediapipe_cpu(evidence):
    return _agreeing_run(evidence, runtime=evidence.get("runner"), against="LiteRT")


def _gpu_delegate(evidence):
    judged = _agreeing_run(evidence, runtime=evidence.get("runner"),
                           against="MediaPipe on the CPU")
    cpu_ops = evidence.get("cpu_ops")
    if judged["runs"] and cpu_ops:
        left = "; ".join(f"{op}: {why}" for op, why in (evidence.get("fallback") or {}).items())
        return {**judged, "runs": False,
                "reason": f"the delegate leaves {cpu_ops} of {evidence.get('ops')} ops to the "
                          f"CPU ({left or 'no reason logged'})"}
    return judged


def _edgetpu(evidence):
    status = edgetpu_status(evidence)
    compiler = status["compiler_version"]
    runtime = (f"edgetpu_compiler {compiler}" if compiler
               else "the Edge TPU's op rules (edgetpu_compiler not on PATH)")
    facts = {"proof": status["confirmed_by"], "runtime": runtime, "reason": None}
    if status["compatible"]:
        return {**facts, "runs": True}
    first = status["first_cpu_op"]
    reason = (f"op #{first['index']} {first['op']} and those after it would run on the CPU: "
              f"{first['reason']}" if first else "not every op maps to the Edge TPU")
    return {**facts, "runs": False, "reason": reason}


def _litert(evidence):  # LiteRT measured the report's top-1 itself: nothing to agree with
    return _agreeing_run(evidence, runtime=evidence.get("runtime"), against="LiteRT")


_READERS = {"mediapipe_cpu": _mediapipe_cpu, "gpu_delegate": _gpu_delegate,
            "edgetpu": _edgetpu, "litert": _litert}
