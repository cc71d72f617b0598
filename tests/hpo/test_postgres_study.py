"""The same CLI flow against a real PostgreSQL server: create, work, show, export."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from hpo.cli import main
from storage import open_storage

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_create_work_export_on_postgres(postgres_url: str, breast_npz: Path,
                                        tmp_path: Path) -> None:
    runner = CliRunner()
    artifacts = tmp_path / "artifacts"
    r = runner.invoke(main, [
        "study", "create", "pg", "--allow-data-issues", "--data", str(breast_npz),
        "--model", "test_efficientnet",
        "--weights", "none", "--trials", "3", "--epochs", "2", "--image-size", "32",
        "--storage", postgres_url, "--artifacts", str(artifacts)])
    assert r.exit_code == 0, r.output
    # the URL shown to the user is the one given (this test server has no password)
    r = runner.invoke(main, ["worker", "--storage", postgres_url, "--study", "pg",
                             "--device", "cpu"])
    assert r.exit_code == 0, r.output
    study = optuna.load_study(study_name="pg", storage=open_storage(postgres_url))
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3
    assert any(p.is_file() for p in artifacts.iterdir())

    r = runner.invoke(main, ["study", "show", "pg", "--storage", postgres_url, "--json"])
    assert r.exit_code == 0, r.output
    shown = json.loads(r.stdout)
    assert shown["config"]["model"] == "test_efficientnet"
    assert shown["progress"]["complete"] + shown["progress"]["pruned"] == 3

    out = tmp_path / "export"
    r = runner.invoke(main, ["export", "--storage", postgres_url, "--study", "pg", "--out",
                             str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "config.json").read_text())["trial"] == study.best_trial.number
