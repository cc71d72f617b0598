"""`hpo report` opened in a real headless browser, offline."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hpo.cli import main
from tests.browser import chromium, render, screenshot
from tests.hpo.fleet import create, load

pytestmark = pytest.mark.slow
PLOTS = ("history", "intermediate", "importance", "parallel", "slice", "timeline")


def test_report_opens_offline_with_every_plot(tmp_path: Path, breast_npz: Path) -> None:
    chromium()
    url = str(tmp_path / "s.journal")
    # the median pruner never prunes its first 5 trials: importances need complete trials
    create(url, "rep", breast_npz, "--pruner", "median", "--metric", "auroc", trials=7,
           epochs=3)
    runner = CliRunner()
    assert runner.invoke(main, ["worker", "--storage", url, "--study", "rep"]).exit_code == 0
    exported = runner.invoke(main, ["export", "--storage", url, "--study", "rep", "--out",
                                    str(tmp_path / "best")])
    assert exported.exit_code == 0, exported.output
    out = tmp_path / "report.html"
    r = runner.invoke(main, ["report", "--storage", url, "--study", "rep", "--out", str(out)])
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert "<script src" not in text and "<link " not in text  # nothing fetched from a CDN
    dom, errors = render(out.as_uri())
    assert not errors, errors
    for key in PLOTS:
        section = dom.split(f'data-plot="{key}"', 1)[1].split("</section>", 1)[0]
        assert "js-plotly-plot" in section, f"plot {key} did not render"
    best = load(url, "rep").best_trial
    best_section = dom.split('id="best"', 1)[1].split("</section>", 1)[0]
    assert f"<td>{best.number}</td>" in best_section and "<td>test</td>" in best_section
    screenshot(out.as_uri(), "report.png", size="1200,2400")


def test_report_refuses_a_study_without_results(tmp_path: Path, breast_npz: Path) -> None:
    url = str(tmp_path / "s.journal")
    create(url, "empty", breast_npz)
    r = CliRunner().invoke(main, ["report", "--storage", url, "--study", "empty"])
    assert r.exit_code == 2 and "no complete trial yet" in r.output
