"""Tests for report/markdown.py: tables, cells and README sections."""

import pytest

from report.markdown import DASH, cell, md_table, replace_section


def test_md_table_aligns_and_escapes():
    table = md_table(["name", "value"], [["a|b", 1], ["c", cell(None)]], align="lr")
    assert table.splitlines() == ["| name | value |", "|---|---:|", "| a\\|b | 1 |",
                                  f"| c | {DASH} |"]


@pytest.mark.parametrize("align", ["l", "lc", ["l", "x"]])
def test_md_table_refuses_a_bad_alignment(align):
    with pytest.raises(ValueError, match="align"):
        md_table(["a", "b"], [], align=align)


def test_md_table_refuses_a_short_row():
    with pytest.raises(ValueError, match="1 cells for 2 headers"):
        md_table(["a", "b"], [["x"]], align="ll")


def test_cell_formats_or_dashes():
    assert cell(None, ".2f", " G") == DASH == "—"
    assert cell(1.2345, ".2f") == "1.23"
    assert cell(-0.5, "+.2f") == "-0.50"
    assert cell(1234567, ",") == "1,234,567"
    assert cell(3.6, "", " G") == "3.6 G"
    assert cell(0.0, ".1f") == "0.0"  # zero is a value, not "missing"


def test_replace_section_keeps_markers_and_the_rest():
    text = ("intro\n<!-- a:begin -->\nold\n<!-- a:end -->\nmiddle\n"
            "<!-- b:begin -->\nkeep\n<!-- b:end -->\n")
    new = replace_section(text, "a", "new\n\n")
    assert new == ("intro\n<!-- a:begin -->\nnew\n<!-- a:end -->\nmiddle\n"
                   "<!-- b:begin -->\nkeep\n<!-- b:end -->\n")
    assert replace_section(new, "a", "new") == new
    with pytest.raises(ValueError, match="<!-- c:begin -->"):
        replace_section(text, "c", "x")
