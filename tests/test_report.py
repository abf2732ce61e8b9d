"""Tests for export/report.py: rendering a hand-made report.json dict."""

import copy
import json
import re

import pytest

from report import render as report_lib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _latency(one, many):
    return {"1_thread": {"median_ms": one, "min_ms": one * 0.9, "max_ms": one * 1.2},
            "all_threads": {"median_ms": many, "min_ms": many * 0.9, "max_ms": many * 1.3}}


def _edgetpu(compatible, first=None):
    ops = [{"index": 0, "op": "CONV_2D", "version": 3, "output": "conv1",
            "supported": compatible, "placement": "edgetpu" if compatible else "cpu",
            "reason": "in the supported-operations table" if compatible
            else "tensors not 8-bit quantized: input 'x' FLOAT32"}]
    return {"file": "x.tflite", "compatible": compatible, "first_cpu_op": first,
            "mapped_ops_estimate": 1 if compatible else 0, "total_ops": 1, "ops": ops,
            "notes": ["a note"],
            "compiler": {"available": False, "ran": False, "reason": "not on PATH",
                         "mapped_ops": None, "total_ops": None, "path": None}}


@pytest.fixture
def report():
    return {
        "model": "resnet20", "dataset": "digits", "num_test": 360, "num_classes": 10,
        "created": "2025-01-01T00:00:00", "machine": {"cpu_count": 2, "platform": "Linux"},
        "variants": [
            {"variant": "keras_float", "file": None, "size_bytes": None, "top1": 0.9750,
             "top5": 0.9990, "top1_delta_points": 0.0, "agreement": 1.0,
             "latency_ms": None, "edgetpu": None},
            {"variant": "float32", "file": "runs/x/resnet20_float32.tflite",
             "size_bytes": 1_100_000, "top1": 0.9750, "top5": 0.9990,
             "top1_delta_points": 0.0, "agreement": 1.0, "latency_ms": _latency(2.0, 1.5),
             "edgetpu": _edgetpu(False, first=0)},
            {"variant": "int8", "file": "runs/x/resnet20_int8.tflite", "size_bytes": 310_000,
             "top1": 0.9722, "top5": None, "top1_delta_points": -0.28, "agreement": 0.9917,
             "latency_ms": _latency(1.0, 0.6), "edgetpu": _edgetpu(True),
             "xnnpack": {"ops": 41, "delegated": 36, "partitions": 3,
                         "not_delegated": {"MAX_POOL_2D": 2, "QUANTIZE": 2, "SOFTMAX": 1}}},
        ],
        "diagnosis": {
            "layers": [{"rank": 1, "tensor_name": "resnet20/conv4_block3_out/Relu",
                        "keras_layers": ["conv4_block3_out"], "op_name": "ADD",
                        "tensor_index": 82, "num_elements": 64, "stddev": 0.01,
                        "mean_error": 0.0, "max_abs_error": 0.05, "mean_squared_error": 1e-4,
                        "rmse": 0.01, "scale": 0.02, "zero_point": -128,
                        "rmse_per_scale": 0.5}],
            "selective": {"denylist": ["resnet20/conv4_block3_out/Relu"], "file": "sel.tflite",
                          "size_bytes": 330_000, "top1": 0.9750, "top5": None,
                          "top1_delta_points": 0.0, "agreement": 0.997},
        },
    }


def _table_rows(markdown):
    """The variants table of the Markdown as {variant: {header: cell}}."""
    lines = markdown.splitlines()
    start = lines.index("## Variants") + 2
    headers = [h.strip() for h in lines[start].strip("|").split("|")]
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(headers, cells))
    return rows


def test_markdown_lists_ops_left_out_of_xnnpack(report):
    markdown = report_lib.render_markdown(report)
    assert ("- **int8**: 36 of 41 ops on XNNPACK in 3 partitions; LiteRT's own kernels run "
            "MAX_POOL_2D x2, QUANTIZE x2, SOFTMAX x1") in markdown
    del report["variants"][2]["xnnpack"]  # reports written before the key existed
    assert "ops on XNNPACK" not in report_lib.render_markdown(report)


def test_markdown_holds_every_variant_and_its_numbers(report):
    markdown = report_lib.render_markdown(report)
    rows = _table_rows(markdown)
    assert list(rows) == [v["variant"] for v in report["variants"]]
    float32_size = report["variants"][1]["size_bytes"]
    for entry in report["variants"]:
        row = rows[entry["variant"]]
        assert float(row["top-1 %"]) == pytest.approx(100 * entry["top1"], abs=0.005)
        assert float(row["Δ top-1 (points)"]) == pytest.approx(entry["top1_delta_points"],
                                                              abs=0.005)
        assert float(row["agreement %"]) == pytest.approx(100 * entry["agreement"], abs=0.005)
        if entry["top5"] is None:
            assert row["top-5 %"] == "—"
        else:
            assert float(row["top-5 %"]) == pytest.approx(100 * entry["top5"], abs=0.005)
        if entry["size_bytes"] is None:
            assert row["size KiB"] == row["size vs float32 %"] == "—"
        else:
            assert float(row["size KiB"]) == pytest.approx(entry["size_bytes"] / 1024, abs=0.05)
            assert float(row["size vs float32 %"]) == pytest.approx(
                100 * entry["size_bytes"] / float32_size, abs=0.005)
        for threads, header in (("1_thread", "latency 1 thread (ms)"),
                                ("all_threads", "latency all threads (ms)")):
            if entry["latency_ms"] is None:
                assert row[header] == "—"
            else:
                assert float(row[header]) == pytest.approx(
                    entry["latency_ms"][threads]["median_ms"], abs=0.005)
    assert rows["int8"]["Edge TPU"].startswith("yes")
    assert rows["float32"]["Edge TPU"].startswith("no: #0 CONV_2D")
    assert rows["keras_float"]["Edge TPU"] == "—"
    assert "`conv4_block3_out`" in markdown and "0.500" in markdown  # diagnosis table
    assert "Selective int8" in markdown and "## Verdict" in markdown


def test_verdict_follows_the_numbers(report):
    good = report_lib.verdict(report)
    assert "int8 is good enough; ship int8" in good
    assert "-0.28 points" in good and "±0.82 points" in good  # SE of 97.5% on 360 images
    bad = copy.deepcopy(report)
    bad["variants"][2].update(top1=0.9500, top1_delta_points=-2.5)
    text = report_lib.verdict(bad)
    assert "int8 is not good enough" in text and "loses 2.50 points" in text
    assert "quantization-aware training" in text
    assert report_lib.render_markdown(bad) != report_lib.render_markdown(report)
    # A QAT variant inside the budget turns the verdict back to "good enough".
    bad["variants"].append({**copy.deepcopy(report["variants"][2]), "variant": "int8_qat",
                            "top1": 0.9700, "top1_delta_points": -0.5})
    assert "int8 is good enough; ship int8_qat" in report_lib.verdict(bad)


def test_selective_not_applied_renders_its_reason(report):
    report["diagnosis"]["selective"] = {
        "applied": False, "int8_drop_points": 0.28, "threshold_points": 1.0,
        "reason": "int8 PTQ drop 0.28 points is within the 1-point threshold"}
    markdown = report_lib.render_markdown(report)
    assert "Not applied: int8 PTQ drop 0.28 points is within the 1-point threshold." in markdown
    assert "selective int8) gives" not in markdown


def test_missing_optional_parts_render(report):
    report["diagnosis"] = None
    for entry in report["variants"]:
        entry["edgetpu"] = None
        entry["latency_ms"] = None
    markdown = report_lib.render_markdown(report)
    assert "No per-layer diagnosis" in markdown
    assert "was not checked for the Edge TPU" in markdown
    assert "int8" in report_lib.render_table(report)


def test_percent_instead_of_fraction_is_refused(report):
    report["variants"][2]["top1"] = 97.22
    with pytest.raises(ValueError, match="fraction"):
        report_lib.render_markdown(report)


def test_write_renders_from_the_json(report, tmp_path):
    paths = report_lib.write(report, tmp_path / "run")
    assert json.loads(paths["json"].read_text()) == report
    assert paths["chart"].read_bytes()[:8] == PNG_SIGNATURE
    markdown = paths["markdown"].read_text()
    assert "](report.png)" in markdown
    assert markdown == report_lib.render_markdown(report, chart="report.png")


def test_write_refuses_nan(report, tmp_path):
    report["variants"][2]["latency_ms"]["1_thread"]["median_ms"] = float("nan")
    with pytest.raises(ValueError, match=r"\['variants'\]\[2\]\['latency_ms'\]\['1_thread'\]"):
        report_lib.write(report, tmp_path)


def test_terminal_table_lines_up(report):
    table = report_lib.render_table(report)
    lines = table.splitlines()
    assert len(lines) == 2 + len(report["variants"])
    assert re.match(r"int8\s+302\.7\s+28\.18\s+97\.22\s+—\s+-0\.28", lines[-1])
