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


def test_the_model_table_renders_the_rows_of_resnet_keras_summary():
    from resnet_keras.summary import summary_rows
    row = {"name": "resnet20", "variant": "B", "input_shape": [32, 32, 3], "params": 274042,
           "trainable_params": 272474, "macs": 40_813_184, "depth": 20}
    table = update_readme.models_section([row]).splitlines()
    assert table[-1] == "| resnet20 | B | 32x32 | 274,042 | 272,474 | 0.041 G | 20 |"
    # The committed page holds what the rows of the model family render today.
    page = (ROOT / update_readme.SECTIONS["models"]).read_text()
    for line in update_readme.models_section(summary_rows(["resnet20"])).splitlines()[2:]:
        assert line in page
