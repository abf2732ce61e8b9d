"""Tests for report/decide.py: the ship decision from a hand-made report (tests/conftest.py)."""

import json

import pytest

from report import render
from report.decide import decide, edgetpu_status


def _variants(report, *names):
    return [entry for entry in report["variants"] if entry["variant"] in names]


def test_int8_within_the_budget_is_shipped(report):
    decision = decide(report)
    assert decision["good_enough"] is True and decision["ship"] == "int8"
    assert decision["reference"] == {"variant": "keras_float", "top1": 0.975}
    [candidate] = decision["candidates"]
    assert candidate["delta_points"] == -0.28 and candidate["within_budget"]
    chosen = decision["chosen"]
    assert chosen["size_vs_float32"] == pytest.approx(310_000 / 1_100_000)
    assert chosen["speedup_vs_float32"] == pytest.approx(1.5 / 0.6)
    assert chosen["edgetpu"]["compatible"] and chosen["edgetpu"]["confirmed_by"] == "rules"
    assert decision["fallback"] is None and decision["next_step"] is None
    assert decision["selective"] == {"layers_in_float": 1, "top1": 0.975, "delta_points": 0.0,
                                     "size_bytes": 330_000}
    assert json.loads(json.dumps(decision, allow_nan=False)) == decision


def test_int8_outside_the_budget_suggests_fp16_and_qat(report):
    report["variants"][2].update(top1=0.9500, top1_delta_points=-2.5)
    report["variants"].append({"variant": "fp16", "file": "f.tflite", "size_bytes": 550_000,
                               "top1": 0.9750, "top1_delta_points": 0.0, "agreement": 1.0})
    decision = decide(report)
    assert decision["good_enough"] is False and decision["ship"] is None
    assert decision["chosen"]["variant"] == "int8"
    assert not decision["candidates"][0]["within_budget"]
    assert decision["fallback"] == {"variant": "fp16", "delta_points": 0.0,
                                    "size_bytes": 550_000}
    assert decision["next_step"] == "int8_qat"
    text = render.verdict({**report, "decision": decision})
    assert "fp16 (+0.00 points, 537.1 KiB) is the Android alternative" in text
    assert "quantization-aware training (int8_qat) is the next thing to try" in text
    # A wider budget takes the same int8 file.
    assert decide(report, threshold_points=3.0)["ship"] == "int8"


def test_a_difference_within_two_standard_errors_is_flagged_as_noise(report):
    decision = decide(report)
    assert decision["one_image_points"] == pytest.approx(100 / 360)
    assert decision["standard_error_points"] == pytest.approx(0.823, abs=1e-3)
    assert decision["candidates"][0]["within_noise"]  # 0.28 <= 2 x 0.82
    assert "is noise on this test set" in render.verdict(report)
    report["num_test"] = 1_000_000
    assert not decide(report)["candidates"][0]["within_noise"]
    report["num_test"] = None
    decision = decide(report)
    assert decision["standard_error_points"] is None
    assert not decision["candidates"][0]["within_noise"]


def test_no_int8_variant_cannot_be_judged(report):
    report["variants"] = _variants(report, "keras_float", "float32")
    decision = decide(report)
    assert decision["candidates"] == [] and decision["chosen"] is None
    assert decision["good_enough"] is None and decision["ship"] is None
    assert "no int8 variant was measured" in render.verdict(report)


def test_no_reference_decides_nothing(report):
    report["variants"] = _variants(report, "int8")
    decision = decide(report)
    assert decision["reference"] is None and decision["good_enough"] is None
    assert render.verdict(report).startswith("No float reference")


def test_bad_threshold_and_percent_accuracies_are_refused(report):
    with pytest.raises(ValueError, match="threshold_points"):
        decide(report, threshold_points=-1)
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


def _with_qat(report, *, qat_top1, int8_qat_top1):
    report["variants"] += [
        {"variant": "keras_qat", "file": None, "size_bytes": None, "top1": qat_top1,
         "top5": None, "top1_delta_points": round(100 * (qat_top1 - 0.975), 4),
         "agreement": 0.99},
        {"variant": "int8_qat", "file": "q.tflite", "size_bytes": 300_000,
         "top1": int8_qat_top1, "top5": None,
         "top1_delta_points": round(100 * (int8_qat_top1 - 0.975), 4), "agreement": 0.99}]
    report["qat"] = {"epochs": 3, "keras_top1": qat_top1, "int8_qat_agreement": 0.995}
    return report


def test_qat_gain_is_judged_against_int8_ptq_and_the_noise(report):
    # 0.28 points over int8 PTQ on 360 images: within 2 standard errors (2 x 0.82).
    decision = decide(_with_qat(report, qat_top1=0.9778, int8_qat_top1=0.9750))
    qat = decision["qat"]
    assert qat["epochs"] == 3 and qat["conversion_agreement"] == 0.995
    assert qat["keras_qat_delta_points"] == pytest.approx(0.28)
    assert qat["over_int8_points"] == pytest.approx(0.28) and qat["within_noise"]
    text = render.verdict({**report, "decision": decision})
    assert "QAT fine-tuned the float model 3 more epochs" in text
    assert "the int8_qat file agrees with it on 99.50% of images" in text
    assert "within the noise: QAT's gain is not shown on this test set" in text


def test_a_qat_gain_beyond_the_noise_is_called_so(report):
    report["variants"][2].update(top1=0.90, top1_delta_points=-7.5)
    qat = decide(_with_qat(report, qat_top1=0.975, int8_qat_top1=0.9722))["qat"]
    assert qat["over_int8_points"] == pytest.approx(7.22) and not qat["within_noise"]
    assert decide({**report, "variants": report["variants"][:3]})["qat"] is None
