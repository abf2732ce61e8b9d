"""Tests for tools/update_readme.py: the README and the docs pages hold what the JSON renders."""

import pathlib

import pytest

from report.markdown import replace_section
from tools import update_readme

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_site_front_page_is_the_readme_with_the_sites_links():
    readme = (ROOT / "README.md").read_text()
    assert "](docs/getting-started.md)" in readme
    assert (ROOT / update_readme.SITE_INDEX).read_text() == update_readme.site_links(readme)


def test_the_readme_is_a_front_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    # No report is embedded: its sections are on its own page, linked.
    headings = [line for line in readme.splitlines() if line.startswith("#")]
    for report_heading in ("## Variants", "## Edge TPU", "## Verdict", "## Per class"):
        assert report_heading not in headings


@pytest.mark.parametrize("name, section", list(update_readme.RUNS.items()))
def test_each_committed_run_renders_its_decision_table_into_the_readme(name, section):
    readme = (ROOT / "README.md").read_text()
    body = update_readme.results_section(update_readme.committed(name))
    assert replace_section(readme, section, body) == readme
    assert "| target | file |" in body and f"docs/results/{name}/report.md" in body


def test_every_rendered_section_is_where_its_file_holds_it():
    for section, path in update_readme.SECTIONS.items():
        text = (ROOT / path).read_text()
        assert f"<!-- {section}:begin -->" in text and f"<!-- {section}:end -->" in text
