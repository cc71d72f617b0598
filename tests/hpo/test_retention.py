from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from hpo.cli import main
from tests.hpo.fleet import create, load

pytestmark = pytest.mark.slow


def test_forty_trials_keep_exactly_three_checkpoints(tmp_path: Path, breast_npz: Path) -> None:
    url = str(tmp_path / "s.journal")
    create(url, "keep", breast_npz, "--keep-checkpoints", "3", "--pruner", "none",
           "--metric", "auroc", trials=40, epochs=1)
    r = CliRunner().invoke(main, ["worker", "--storage", url, "--study", "keep"])
    assert r.exit_code == 0, r.output
    study = load(url, "keep")
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 40
    artifacts = Path(url + ".artifacts")
    files = [p for p in artifacts.iterdir() if p.is_file()]
    assert len(files) == 3
    best = study.best_trial.user_attrs["hpo.checkpoint"]
    assert (artifacts / best).is_file()
    deleted = study.user_attrs["hpo.deleted_checkpoints"]
    assert deleted and study.best_trial.number not in deleted
    r = CliRunner().invoke(main, ["export", "--storage", url, "--study", "keep", "--trial",
                                  str(deleted[0]), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "deleted to keep only the best" in r.output
    ok = CliRunner().invoke(main, ["export", "--storage", url, "--study", "keep", "--out",
                                   str(tmp_path / "best")])
    assert ok.exit_code == 0, ok.output
