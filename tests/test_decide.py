"""Tests for report/decide.py: the ship decision from constructed reports (tests/report_inputs.py).

The `report` fixture (tests/conftest.py) has 3,600 test images; the others
here are built from made-up predictions to say one thing each.
"""

import json
import pathlib

import pytest
import report_inputs  # tests/ is on sys.path under pytest

import train
from job import config as config_lib
from report import render
from report.decide import decide
from report.decision_table import target_lines
from report.targets import edgetpu_status
from report.verdict import verdict

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]


def _int8_pick(decision):
    """The int8 file the int8 question settles on: the best good one, or None."""
    return decision["chosen"]["variant"] if decision["good_enough"] else None


def _variants(report, *names):
    return [entry for entry in report["variants"] if entry["variant"] in names]


def _two_files(truth, keras, int8, **extra):
    """A report of keras_float, float32 (= keras) and int8, from their top-1 classes."""
    made = {"model": "resnet20", "dataset": "fashion_mnist", "variants": [
        {"variant": "keras_float", "file": None, "size_bytes": None},
        {"variant": "float32", "file": "f.tflite", "size_bytes": 1_100_000},
        {"variant": "int8", "file": "i.tflite", "size_bytes": 310_000}], **extra}
    return report_inputs.measure(made, truth, {"keras_float": keras, "float32": keras,
                                               "int8": int8})


def test_int8_within_the_budget_even_at_the_intervals_worst_is_shipped(report):
    decision = decide(report)
    assert (decision["budget_points"], decision["class_budget_points"],
            decision["confidence"]) == (1.0, 3.0, 0.95)
    assert decision["good_enough"] is True and _int8_pick(decision) == "int8"
    assert decision["paired"] and decision["reference"] == {"variant": "keras_float",
                                                            "top1": 0.975}
    [candidate] = decision["candidates"]
    comparison = candidate["comparison"]
    assert (comparison["reference_only"], comparison["variant_only"]) == (25, 15)
    assert candidate["delta_points"] == pytest.approx(-0.2778)
    assert candidate["worst_points"] == comparison["interval_points"][0]
    assert -1.0 < candidate["worst_points"] < -0.28 and candidate["budget"] == "within"
    assert comparison["within_noise"] and candidate["good"]
    chosen = decision["chosen"]
    assert chosen["size_vs_float32"] == pytest.approx(310_000 / 1_100_000)
    assert chosen["speedup_vs_float32"] == pytest.approx(1.5 / 0.6)
    assert chosen["speedup_1_thread_vs_float32"] == pytest.approx(2.0) and \
        chosen["faster_than_float32"]
    assert chosen["edgetpu"]["compatible"] and chosen["edgetpu"]["confirmed_by"] == "rules"
    assert decision["fallback"] is None and decision["next_step"] is None
    assert [c["variant"] for c in decision["comparisons"]] == ["float32", "int8"]
    assert decision["selective"]["layers_in_float"] == 1
    assert json.loads(json.dumps(decision, allow_nan=False)) == decision
    text = verdict({**report, "decision": decision})
    assert ("int8 loses 0.28 points (95% CI -0.65 to +0.08): within the 1-point budget even "
            "at the interval's worst.") in text
    assert "25 images only Keras float gets right and 15 only int8 does" in text


def test_the_budget_is_checked_at_the_intervals_worst_end():
    # 360 images (digits) and int8 agrees on every one: the estimate is 0, but
    # 360 images cannot rule out a loss of about a point.
    truth = report_inputs.labels()
    keras = report_inputs.predictions(truth, wrong=[0])
    report = _two_files(truth, keras, keras.copy())
    decision = decide(report)
    [candidate] = decision["candidates"]
    assert candidate["delta_points"] == 0 and candidate["budget"] == "unproven"
    assert candidate["worst_points"] < -1.0
    assert decision["good_enough"] is False and _int8_pick(decision) is None
    text = verdict({**report, "decision": decision})
    assert "within the 1-point budget on the estimate but not at the interval's worst" in text
    assert "360 test images cannot show that it stays within it" in text
    assert ("int8 is not shown good enough on 360 test images: int8 has an interval reaching"
            in text)
    assert _int8_pick(decide(report, budget_points=1.5)) == "int8"


def test_int8_outside_the_budget_suggests_fp16_and_qat(report):
    truth = report_inputs.labels(3600)
    keras = report_inputs.predictions(truth, wrong=range(90))
    int8 = report_inputs.predictions(truth, wrong=range(90, 180), like=keras)  # -2.5 points
    report["variants"].append({"variant": "fp16", "file": "f.tflite", "size_bytes": 550_000})
    report_inputs.measure(report, truth, {"keras_float": keras, "float32": keras, "int8": int8,
                                          "fp16": keras})
    decision = decide(report)
    assert decision["good_enough"] is False and _int8_pick(decision) is None
    assert decision["chosen"]["variant"] == "int8"
    assert decision["candidates"][0]["budget"] == "outside"
    assert decision["fallback"]["variant"] == "fp16"
    assert decision["fallback"]["delta_points"] == 0.0
    assert decision["fallback"]["budget"] == "within"
    assert decision["next_step"] == "int8_qat"
    text = verdict({**report, "decision": decision})
    assert "int8 loses 2.50 points (95% CI" in text and "outside the 1-point budget" in text
    assert "fp16 (+0.00 points, 95% CI" in text and "537.1 KiB) is the float alternative" \
        in text
    assert "quantization-aware training (int8_qat) is the next thing to try" in text
    assert _int8_pick(decide(report, budget_points=4.0)) == "int8"


def test_flat_top1_with_one_class_down_10_points_is_refused_naming_the_class():
    # 3,600 Fashion-MNIST-like images, 360 per class: int8 loses 36 Shirts
    # (taken for T-shirt/top) and gains 36 images of the other classes back.
    truth = report_inputs.labels(3600)
    keras = report_inputs.predictions(truth, wrong=range(0, 900, 1))  # 75% everywhere
    shirts = [i for i in report_inputs.of_class(6, 360) if keras[i] == truth[i]][:36]
    gained = [i for i in range(900) if truth[i] != 6][:36]
    int8 = report_inputs.predictions(truth, wrong=shirts, taken_for=0, like=keras)
    int8[gained] = truth[gained]
    report = _two_files(truth, keras, int8)
    report["class_names"] = FASHION
    decision = decide(report)
    [candidate] = decision["candidates"]
    assert candidate["delta_points"] == 0 and candidate["budget"] == "within"
    worst = candidate["classes"]["worst"]
    assert (worst["name"], worst["count"], worst["change_points"]) == ("Shirt", 360, -10.0)
    assert worst["comparison"]["interval_points"][1] < 0  # beyond the noise, too
    assert [c["name"] for c in candidate["classes"]["over_budget"]] == ["Shirt"]
    assert candidate["within_class_budget"] is False and candidate["good"] is False
    assert decision["good_enough"] is False and _int8_pick(decision) is None
    text = verdict({**report, "decision": decision})
    assert ("int8 loses 10.00 points of recall on class Shirt (65.00% against 75.00% on 360 "
            "images), over the 3-point per-class budget") in text
    assert "Per class, its worst is class Shirt" in text
    markdown = render.render_markdown({**report, "decision": decision})
    assert "- **int8**: Shirt taken for T-shirt/top: 36 more times (0 → 36)" in markdown
    # A per-class budget of 12 points lets the same file through.
    assert _int8_pick(decide(report, class_budget_points=12)) == "int8"


def test_a_budget_set_on_the_command_line_changes_the_decision(report):
    def decided(argv):
        _, overrides = train.parse_args(argv)
        settings = config_lib.resolve(overrides=overrides).report
        return decide(report, budget_points=settings.budget_points,
                      class_budget_points=settings.class_budget_points,
                      confidence=settings.confidence)

    assert _int8_pick(decided([])) == "int8"
    strict = decided(["--report.budget_points", "0.5"])  # the interval reaches -0.65
    assert strict["budget_points"] == 0.5 and _int8_pick(strict) is None
    assert strict["candidates"][0]["budget"] == "unproven"
    loose = decided(["--report.confidence", "0.8"])  # a narrower interval, same file
    assert loose["confidence"] == 0.8 and _int8_pick(loose) == "int8"
    assert loose["candidates"][0]["worst_points"] > strict["candidates"][0]["worst_points"]
    with pytest.raises(ValueError, match="report.class_budget_points must be >= 0"):
        decided(["--report.class_budget_points", "-1"])


def test_latency_never_chooses_and_a_slower_int8_is_called_this_hosts(report):
    by_name = {e["variant"]: e for e in report["variants"]}
    for threads, ms in (("1_thread", 3.0), ("all_threads", 2.0)):
        by_name["int8"]["latency_ms"][threads]["median_ms"] = ms  # float32: 2.0 and 1.5
    report["machine"]["cpu"] = {"model": "Intel Xeon", "architecture": "x86_64",
                                "int8_features": ["avx2"],
                                "int8_features_checked": ["avx2", "avx512_vnni", "amx_int8"]}
    decision = decide(report)
    assert _int8_pick(decision) == "int8" and decision["chosen"]["faster_than_float32"] is False
    assert decision["host"]["int8_features"] == ["avx2"]
    text = verdict({**report, "decision": decision})
    assert ("On this host (Intel Xeon, x86_64 with avx2; no avx512_vnni or amx_int8) int8 runs "
            "at 0.75x the float32 file's speed on all threads and 0.67x on one thread: int8 "
            "is not faster than float32 here. That figure is this host's, not a phone's") \
        in text
    assert "the choice above rests on accuracy within the budgets and on size" in text


def test_a_report_without_image_by_image_results_is_not_judged(report):
    for entry in report["variants"]:
        for key in ("paired", "per_class", "confusion_changes"):
            del entry[key]
    decision = decide(report)
    assert decision["paired"] is False and decision["good_enough"] is None
    assert _int8_pick(decision) is None and decision["candidates"][0]["comparison"] is None
    text = verdict({**report, "decision": decision})
    assert "holds no image-by-image results" in text and "re-run the report stage" in text
    assert "Verdict: not judged" in text


def test_no_int8_variant_cannot_be_judged(report):
    report["variants"] = _variants(report, "keras_float", "float32")
    decision = decide(report)
    assert decision["candidates"] == [] and decision["chosen"] is None
    assert decision["good_enough"] is None and _int8_pick(decision) is None
    assert "no int8 variant was measured" in verdict(report_inputs.decided(report))


def test_no_reference_decides_nothing(report):
    report["variants"] = _variants(report, "int8")
    decision = decide(report)
    assert decision["reference"] is None and decision["good_enough"] is None
    assert verdict(report_inputs.decided(report)).startswith("No float reference")


@pytest.mark.parametrize("settings, match", [
    ({"budget_points": -1}, "budget_points must be >= 0"),
    ({"class_budget_points": -0.5}, "class_budget_points must be >= 0"),
    ({"confidence": 1.0}, r"confidence must be a level in \[0.5, 1\), e.g. 0.95, got 1.0"),
    # Below 0.5 the interval's worst end would show nothing; the configuration refuses it too.
    ({"confidence": 0.3}, r"confidence must be a level in \[0.5, 1\), e.g. 0.95, got 0.3"),
])
def test_bad_settings_are_refused(report, settings, match):
    with pytest.raises(ValueError, match=match):
        decide(report, **settings)


def test_percent_accuracies_are_refused(report):
    report["variants"][2]["top1"] = 97.22
    with pytest.raises(ValueError, match="fraction"):
        decide(report)


def test_edgetpu_status(report):
    assert edgetpu_status(None) is None
    status = edgetpu_status(report["variants"][1]["edgetpu"])
    assert status["compatible"] is False and status["confirmed_by"] == "rules"
    assert status["first_cpu_op"] == {"index": 0, "op": "CONV_2D",
                                      "reason": "tensors not 8-bit quantized: input 'x' FLOAT32"}
    assert status["mapped_ops"] is None


def _with_qat(report, *, gained):
    """keras_qat and int8_qat: int8_qat misses int8's errors except the first `gained`."""
    truth = report_inputs.labels(3600)
    classes = {"keras_float": report_inputs.predictions(truth, wrong=range(90))}
    classes["float32"] = classes["keras_float"]
    classes["int8"] = report_inputs.predictions(truth, wrong=range(90, 115),
                                                like=classes["keras_float"])
    classes["int8"][:15] = truth[:15]
    qat = classes["int8"].copy()
    fixed = [i for i in range(3600) if qat[i] != truth[i]][:gained]
    qat[fixed] = truth[fixed]
    classes["int8_qat"], classes["keras_qat"] = qat, qat.copy()
    classes["keras_qat"][fixed[:1]] = (truth[fixed[:1]] + 1) % 10  # one the file converts better
    report["variants"] += [
        {"variant": "keras_qat", "file": None, "size_bytes": None},
        {"variant": "int8_qat", "file": "q.tflite", "size_bytes": 300_000}]
    report_inputs.measure(report, truth, classes)
    report["qat"] = {
        "epochs": 3, "keras_top1": report["variants"][3]["top1"],
        "int8_qat_agreement": 0.9997,
        "against_int8": report_inputs.counts(truth, classes["int8"], qat, name="int8"),
        "against_keras_qat": report_inputs.counts(truth, classes["keras_qat"], qat,
                                                  name="keras_qat")}
    return report


def test_qat_gain_is_judged_against_int8_ptq_image_by_image(report):
    decision = decide(_with_qat(report, gained=3))
    qat = decision["qat"]
    assert qat["epochs"] == 3 and qat["conversion_agreement"] == 0.9997
    assert qat["over_int8_points"] == pytest.approx(100 * 3 / 3600)
    assert (qat["over_int8"]["reference_only"], qat["over_int8"]["variant_only"]) == (0, 3)
    assert qat["within_noise"] is True  # 3 images one way: McNemar p = 0.25
    assert (qat["conversion"]["reference_only"], qat["conversion"]["variant_only"]) == (0, 1)
    text = verdict({**report, "decision": decision})
    assert "QAT fine-tuned the float model 3 more epochs" in text
    assert "the int8_qat file agrees with it on 99.97% of images (+0.03 points, 95% CI" in text
    assert "int8_qat is +0.08 points against int8 PTQ (95% CI" in text
    assert "McNemar p = 0.250), within the noise: QAT's gain is not shown on this test set" \
        in text


def test_a_qat_gain_beyond_the_noise_is_called_so(report):
    qat = decide(_with_qat(report, gained=30))["qat"]
    assert qat["over_int8"]["variant_only"] == 30 and qat["within_noise"] is False
    assert decide({**report, "variants": report["variants"][:3]})["qat"] is None


def test_every_decision_field_is_documented(report):
    docs = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "report_json.md").read_text()
    decision = decide(_with_qat(report, gained=3))
    candidate = decision["candidates"][0]
    target = decide(_three_files())["targets"][0]
    fields = {*decision, *candidate, *candidate["comparison"], *candidate["classes"],
              *target, *target["runs"][0], *_three_files()["variants"][1],
              *candidate["classes"]["worst"], *decision["chosen"], *decision["qat"],
              *decision["host"], *report["variants"][0], *report["variants"][0]["per_class"][0],
              *report["variants"][0]["paired"], *report["qat"]}
    assert sorted(f for f in fields if f"`{f}`" not in docs) == []


# ---------------------------------------------------------------- targets

GPU_ERROR = "ToTensorConverter: input data size does not match expected size"


def _ran(ops=40, *, ran=True, error=None, cpu_ops=0):
    return {"runner": "MediaPipe Tasks 0.10.35, OpenGL ES 3.2 Mesa 22.3.6 on llvmpipe",
            "ops": ops, "gpu_ops": None if cpu_ops is None else ops - cpu_ops,
            "cpu_ops": cpu_ops, "fallback": {}, "ran": ran, "error": error, "images": 50,
            "agreement": 1.0 if ran else None}


def _edgetpu_rules(compatible):
    first = None if compatible else 0
    return {"compatible": compatible, "first_cpu_op": first, "total_ops": 3,
            "ops": [{"index": 0, "op": "CONV_2D", "reason": "tensors not 8-bit quantized"}],
            "compiler": {"available": False, "ran": False, "reason": "not on PATH"}}


def _three_files(num_test=3600, **evidence):
    """keras_float, float32, fp16 and int8 agreeing on every image, each proven on each runtime."""
    truth = report_inputs.labels(num_test)
    keras = report_inputs.predictions(truth, wrong=range(num_test // 40))  # 97.5% top-1
    sizes = {"float32": 1_100_000, "fp16": 550_000, "int8": 310_000}
    made = {"model": "resnet20", "dataset": "digits", "variants": [
        {"variant": "keras_float", "file": None, "size_bytes": None}] + [
        {"variant": v, "file": f"resnet20_{v}.tflite", "size_bytes": size,
         "litert": {"runtime": "LiteRT 2.3.0", "ran": True, "images": num_test},
         "mediapipe_cpu": {"runner": "MediaPipe Tasks 1.2.2", "ran": True, "error": None,
                           "images": 50, "agreement": 1.0},
         "gpu_delegate": _ran(), "edgetpu": _edgetpu_rules(v == "int8")}
        for v, size in sizes.items()]}
    for entry in made["variants"][1:]:
        entry.update(evidence.get(entry["variant"], {}))
    return report_inputs.measure(made, truth, {v: keras for v in ("keras_float", *sizes)})


def _targets(decision):
    return {t["target"]: t for t in decision["targets"]}


def test_the_smallest_file_within_budget_is_picked_where_it_runs_and_not_elsewhere():
    report = _three_files(int8={"gpu_delegate": _ran(ran=False, error=GPU_ERROR, cpu_ops=None)})
    decision = decide(report)
    targets = _targets(decision)
    assert {name: t["pick"] for name, t in targets.items()} == {
        "android_cpu": "int8", "android_gpu": "fp16", "edgetpu": "int8", "litert_cpu": "int8"}
    assert decision["ship"] == "int8"  # the Android CPU answer
    gpu = targets["android_gpu"]
    assert gpu["why"] == "within_budgets" and [c["variant"] for c in gpu["runs"]] == [
        "float32", "fp16"]
    assert gpu["refused"] == [{"variant": "int8", "proof": "ran", "reason": GPU_ERROR,
                               "verified_on": _ran()["runner"]}]
    assert [r["variant"] for r in targets["edgetpu"]["refused"]] == ["float32", "fp16"]
    assert targets["edgetpu"]["runs"][0]["proof"] == "rules"
    lines = target_lines({**report, "decision": decision})
    assert lines[1].startswith("Android GPU: resnet20_fp16.tflite, 537.1 KiB, +0.00 (95% CI")
    assert lines[1].endswith("ran on MediaPipe Tasks 0.10.35, OpenGL ES 3.2 Mesa 22.3.6 on "
                             "llvmpipe")
    markdown = render.render_markdown({**report, "decision": decision})
    assert markdown.index("## Which file goes to which device") < markdown.index("## Variants")
    assert f"  - int8 does not run there: {GPU_ERROR}" in markdown


def test_a_partly_delegated_file_or_one_that_answers_otherwise_does_not_run_on_the_gpu():
    partly = _ran(cpu_ops=2)
    partly["fallback"] = {"LOG_SOFTMAX": "Operation is not supported."}
    wrong = {**_ran(), "agreement": 0.5}
    targets = _targets(decide(_three_files(int8={"gpu_delegate": partly},
                                           fp16={"gpu_delegate": wrong})))
    refused = {r["variant"]: r["reason"] for r in targets["android_gpu"]["refused"]}
    assert refused["int8"] == ("the delegate leaves 2 of 40 ops to the CPU (LOG_SOFTMAX: "
                               "Operation is not supported.)")
    assert refused["fp16"].startswith("it runs, but its top-1 equals MediaPipe on the CPU's on "
                                      "only 50% of 50 images")
    assert targets["android_gpu"]["pick"] == "float32"


def test_where_nothing_is_shown_within_budget_float32_ships_and_the_images_needed_are_given():
    # 360 images all agreeing: every interval is about +-1.14 points wide.
    decision = decide(_three_files(num_test=360))
    targets = _targets(decision)
    cpu = targets["android_cpu"]
    assert (cpu["pick"], cpu["why"]) == ("float32", "float32_fallback")
    assert {c["variant"]: (c["budget"], c["images_needed"]) for c in cpu["runs"]} == {
        v: ("unproven", 411) for v in ("float32", "fp16", "int8")}
    # float32 does not run on the Edge TPU, and int8 is not shown within the budget.
    assert (targets["edgetpu"]["pick"], targets["edgetpu"]["why"]) == (
        None, "none_within_budgets")
    markdown = render.render_markdown({**_three_files(num_test=360), "decision": decision})
    assert ("  - int8 runs there, but has an interval reaching -1.14 points, not shown within the "
            "1-point budget on 360 test images; at the disagreement measured, 411 would show it"
            ) in markdown


def test_a_target_whose_runtime_was_not_run_is_not_decided():
    report = _three_files(**{v: {"mediapipe_cpu": None, "gpu_delegate": None}
                             for v in ("float32", "fp16", "int8")})
    report["mediapipe_check"] = {"checked": False, "reason": "--report.mediapipe_images is 0"}
    decision = decide(report, target_names=("android_gpu", "litert_cpu"))
    assert [t["target"] for t in decision["targets"]] == ["android_gpu", "litert_cpu"]
    gpu = decision["targets"][0]
    assert (gpu["pick"], gpu["why"]) == (None, "not_checked")
    assert gpu["not_checked"] == {"variants": ["float32", "fp16", "int8"],
                                  "reason": "not run: --report.mediapipe_images is 0"}
    assert decision["ship"] is None  # the Android CPU was not asked for
    with pytest.raises(ValueError, match="report.targets must name each target once, from "
                                         "android_cpu, android_gpu, edgetpu, litert_cpu"):
        decide(report, target_names=("iphone",))
