"""Tests for report/render.py: rendering a hand-made report.json dict (tests/conftest.py)."""

import copy
import json
import pathlib
import re

import pytest
import report_inputs  # tests/ is on sys.path under pytest

from report import render as report_lib
from report import tables
from report.decide import decide
from report.verdict import verdict

ROOT = pathlib.Path(__file__).resolve().parents[1]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _markdown(report):
    """report.md's text for `report`, decided first as the report stage does."""
    return report_lib.render_markdown(report_inputs.decided(report))


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
    markdown = _markdown(report)
    assert ("- **int8**: 36 of 41 ops on XNNPACK in 3 partitions; LiteRT's own kernels run "
            "MAX_POOL_2D x2, QUANTIZE x2, SOFTMAX x1") in markdown
    del report["variants"][2]["xnnpack"]  # reports written before the key existed
    assert "ops on XNNPACK" not in _markdown(report)


def _gpu(ops, gpu_ops, *, ran, error=None, fallback=None):
    return {"runner": "MediaPipe Tasks 0.10.35, OpenGL ES 3.2 Mesa 22.3.6 on llvmpipe",
            "ops": ops, "gpu_ops": gpu_ops, "cpu_ops": None if gpu_ops is None else ops - gpu_ops,
            "fallback": fallback or {}, "ran": ran, "error": error, "images": 50,
            "agreement": 0.98 if ran else None}


def test_markdown_gives_the_gpu_delegates_placement_and_run(report):
    assert "Not checked: this report predates the check." in _markdown(report)
    report["mediapipe_check"] = {"checked": False, "reason": "--report.mediapipe_images is 0"}
    assert "Not checked: --report.mediapipe_images is 0." in _markdown(report)
    report["mediapipe_check"] = {"checked": True, "images": 50}
    report["variants"][1]["gpu_delegate"] = _gpu(37, 37, ran=True)
    report["variants"][2]["gpu_delegate"] = _gpu(
        41, 38, ran=False, error="Index is out of range",
        fallback={"SOFTMAX": "OP is supported, but tensor type/shape isn't compatible."})
    markdown = _markdown(report)
    assert "here MediaPipe Tasks 0.10.35, OpenGL ES 3.2 Mesa 22.3.6 on llvmpipe." in markdown
    assert "on the first 50 test images" in markdown
    assert ("- **float32**: all 37 ops on the GPU delegate; it ran 50 images, top-1 as on the "
            "CPU for 98.0%") in markdown
    assert ("- **int8**: 38 of 41 ops on the GPU delegate, 3 left to the CPU; the run fails: "
            "Index is out of range\n"
            "    - SOFTMAX: OP is supported, but tensor type/shape isn't compatible.") in markdown
    report["variants"][2]["gpu_delegate"] = _gpu(41, None, ran=False, error="cannot load")
    assert "- **int8**: not placed: cannot load" in _markdown(report)


def test_markdown_holds_every_variant_and_its_numbers(report):
    markdown = _markdown(report)
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
    good = verdict(report_inputs.decided(report))
    assert "int8 is good enough: int8, at 28.2% of the float32 file's size, is within" in good
    assert "int8 loses 0.28 points (95% CI -0.65 to +0.08)" in good
    assert "on the same 3,600 test images (one image is 0.03 points)" in good
    bad = copy.deepcopy(report)
    int8 = bad["variants"][2]
    int8["paired"].update(reference_only=115, variant_only=15, both_right=3395)  # -2.78 points
    int8.update(top1=0.9472, top1_delta_points=-2.7778)
    text = verdict(report_inputs.decided(bad))
    assert "int8 is not good enough" in text and "int8 loses 2.78 points, outside" in text
    assert "quantization-aware training" in text
    assert _markdown(bad) != _markdown(report)
    # A QAT file inside the budget turns the verdict back to "good enough".
    bad["variants"].append({**copy.deepcopy(report["variants"][2]), "variant": "int8_qat",
                            "top1": 0.9700})
    assert "int8 is good enough: int8_qat" in verdict(report_inputs.decided(bad))


def test_markdown_shows_the_paired_comparisons_and_the_classes(report):
    markdown = _markdown(report)
    lines = markdown.splitlines()
    paired = lines.index("## Image by image")
    header = next(i for i in range(paired, len(lines)) if lines[i].startswith("| variant"))
    assert lines[header + 3] == ("| int8 | keras_float | 15 | 25 | -0.28 | -0.65 to +0.08 | "
                                 "0.154 | within |")
    classes = lines.index("## Per class")
    header = next(i for i in range(classes, len(lines)) if lines[i].startswith("| class"))
    assert lines[header] == "| class | images | keras_float recall % | float32 Δ | int8 Δ |"
    assert lines[header + 2] == "| 0 | 360 | 97.50 | +0.00 | -0.28 |"
    assert "- **int8**'s worst class: 0, -0.28 points (95% CI" in markdown
    assert "every class within the 3-point budget" in markdown
    assert "- **int8**: 0 taken for 1: 1 more time (9 → 10); 1 taken for 2: 1 more time" in markdown
    assert "(AMD" not in markdown  # the fixture's machine records no CPU
    report["machine"]["cpu"] = {"model": "AMD EPYC", "architecture": "x86_64",
                                "int8_features": ["avx2", "avx512_vnni"],
                                "int8_features_checked": ["avx2", "avx512_vnni", "amx_int8"]}
    assert ("on Linux with 2 CPUs (AMD EPYC, x86_64 with avx2, avx512_vnni; no amx_int8)"
            in _markdown(report))


def test_selective_not_applied_renders_its_reason(report):
    report["diagnosis"]["selective"] = {
        "applied": False, "int8_drop_points": 0.28, "threshold_points": 1.0,
        "reason": "int8 PTQ drop 0.28 points is within the 1-point threshold"}
    markdown = _markdown(report)
    assert "Not applied: int8 PTQ drop 0.28 points is within the 1-point threshold." in markdown
    assert "selective int8) gives" not in markdown


def test_missing_optional_parts_render(report):
    report["diagnosis"] = None
    for entry in report["variants"]:
        entry["edgetpu"] = None
        entry["latency_ms"] = None
    markdown = _markdown(report)
    assert "No per-layer diagnosis" in markdown
    assert "was not checked for the Edge TPU" in markdown
    assert "int8" in tables.render_table(report_inputs.decided(report))


def test_percent_instead_of_fraction_is_refused(report):
    report["variants"][2]["top1"] = 97.22
    with pytest.raises(ValueError, match="fraction"):
        _markdown(report)


def test_write_renders_from_the_json(report, tmp_path):
    report = report_inputs.decided(report)
    paths = report_lib.write(report, tmp_path / "run")
    assert json.loads(paths["json"].read_text()) == report
    assert paths["chart"].read_bytes()[:8] == PNG_SIGNATURE
    markdown = paths["markdown"].read_text()
    assert "](report.png)" in markdown
    assert markdown == report_lib.render_markdown(report, chart="report.png")


def test_write_refuses_a_report_without_its_decision(report, tmp_path):
    # Deciding is the report stage's; the renderer only renders what it saved.
    with pytest.raises(ValueError, match="no per-target decision"):
        report_lib.write(report, tmp_path)
    assert not list(tmp_path.iterdir())


def test_write_refuses_nan(report, tmp_path):
    report["variants"][2]["latency_ms"]["1_thread"]["median_ms"] = float("nan")
    with pytest.raises(ValueError, match=r"\['variants'\]\[2\]\['latency_ms'\]\['1_thread'\]"):
        report_lib.write(report_inputs.decided(report), tmp_path)


def test_terminal_table_lines_up(report):
    table = tables.render_table(report_inputs.decided(report))
    lines = table.splitlines()
    assert len(lines) == 2 + len(report["variants"])
    assert re.match(r"int8\s+302\.7\s+28\.18\s+97\.22\s+—\s+-0\.28", lines[-1])


def test_the_verdict_renders_the_saved_decision(report, tmp_path):
    paths = report_lib.write(report_inputs.decided(report), tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["decision"] == decide(copy.deepcopy(report))
    # The verdict reads the saved decision, not the variants: a stricter
    # saved decision is what the paragraph says.
    data["decision"] = decide(data, budget_points=0.1)
    text = verdict(data)
    assert "outside the 0.1-point budget" in text and "int8 is not good enough" in text


@pytest.mark.parametrize("run", ["default_run", "fashion_mnist"])
def test_committed_report_is_what_its_json_renders(run):
    folder = ROOT / "docs" / "results" / run
    data = json.loads((folder / "report.json").read_text())
    assert report_lib.render_markdown(data, chart="report.png") == \
        (folder / "report.md").read_text()


def test_edgetpu_status_is_the_same_in_table_section_and_verdict(report):
    report["variants"][2]["edgetpu"]["compiler"] = {
        "available": True, "ran": True, "ok": True, "version": "16.0", "mapped_ops": 1,
        "total_ops": 1, "path": "/x/resnet20_int8_edgetpu.log"}
    markdown = _markdown(report)
    assert _table_rows(markdown)["int8"]["Edge TPU"] == "yes (compiler: 1/1 ops)"
    assert "  - compiler 16.0: ok, 1 of 1 ops mapped, `resnet20_int8_edgetpu.log`" in markdown
    assert "Its file maps fully onto the Edge TPU (edgetpu_compiler 16.0 mapped 1 of 1 ops)." \
        in markdown
    assert ("- **float32**: not compatible; op #0 and the 0 after it would run on the CPU, "
            "starting with CONV_2D: tensors not 8-bit quantized") in markdown
