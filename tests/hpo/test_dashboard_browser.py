"""`hpo dashboard` against a PostgreSQL study, looked at in a real headless browser."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpo.cli import main
from tests.browser import chromium, render, screenshot
from tests.hpo.fleet import create, load, spawn

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dashboard_shows_study_trials_notes_and_checkpoints(
        postgres_url: str, breast_npz: Path, tmp_path: Path) -> None:
    chromium()
    artifacts = tmp_path / "artifacts"
    create(postgres_url, "watched", breast_npz, "--artifacts", str(artifacts), "--pruner",
           "none", trials=3, epochs=1)
    r = CliRunner().invoke(main, ["worker", "--storage", postgres_url, "--study", "watched"])
    assert r.exit_code == 0, r.output
    best = load(postgres_url, "watched").best_trial
    port = _free_port()
    server = spawn(["dashboard", "--storage", postgres_url, "--port", str(port)],
                   tmp_path / "dashboard.log")
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/studies", timeout=2) as resp:
                    studies = json.load(resp)["study_summaries"]
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "dashboard.log").read_text()
                time.sleep(0.5)
        study_id = next(s["study_id"] for s in studies if s["study_name"] == "watched")

        dom, errors = render(f"{base}/dashboard")
        assert "watched" in dom, dom[-2000:]
        page = f"{base}/dashboard/studies/{study_id}/trials?numbers={best.number}"
        dom, errors = render(page)
        assert f"trial-{best.number}-best.safetensors" in dom  # the checkpoint artifact
        assert "Trial 0" in dom and "Trial 2" in dom
        assert "complete: val accuracy" in dom  # the trial's note
        assert not errors, errors
        shot = screenshot(page, "dashboard.png")
        assert shot.stat().st_size > 10_000
        # the artifact is downloadable through the dashboard
        artifact_id = best.user_attrs["hpo.checkpoint"]
        with urllib.request.urlopen(
                f"{base}/artifacts/{study_id}/{best._trial_id}/{artifact_id}", timeout=10) as resp:
            assert resp.status == 200 and len(resp.read()) > 1000
    finally:
        server.terminate()
        server.wait(timeout=10)
