"""Trials that never sent a heartbeat (an ask whose reply was lost) are found and retried."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo.objective import ATTR_REASON
from hpo.worker import _fail_stale
from storage import SilentTrialWatch, never_beat_trial_ids, open_storage

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'studies.db'}"
    return str(request.getfixturevalue("postgres_url"))


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _study(url: str) -> optuna.Study:
    storage = open_storage(url, heartbeat_interval=1, grace_period=2, max_retry=1)
    return optuna.create_study(study_name="s", storage=storage, direction="maximize")


def _lost_ask(study: optuna.Study) -> int:
    """What a worker leaves behind when ``ask`` commits but its reply never arrives."""
    return study._storage.create_new_trial(study._study_id)


def test_only_heartbeat_less_running_trials_are_due_and_only_after_the_wait(db_url: str) -> None:
    study = _study(db_url)
    lost = _lost_ask(study)
    live = study.ask()
    study._storage.record_heartbeat(live._trial_id)
    done = study.ask()
    study.tell(done, 1.0)
    clock = FakeClock()
    watch = SilentTrialWatch(after_s=30, clock=clock)

    assert never_beat_trial_ids(study._storage, study._study_id) == {lost}
    assert watch.due(study._storage, study._study_id) == []
    clock.now = 29.0
    assert watch.due(study._storage, study._study_id) == []
    clock.now = 30.0
    assert watch.due(study._storage, study._study_id) == [lost]


def test_a_trial_that_starts_beating_is_forgotten(db_url: str) -> None:
    study = _study(db_url)
    slow = _lost_ask(study)
    clock = FakeClock()
    watch = SilentTrialWatch(after_s=30, clock=clock)
    assert watch.due(study._storage, study._study_id) == []
    study._storage.record_heartbeat(slow)  # it was only a slow sampler after all
    clock.now = 60.0
    assert watch.due(study._storage, study._study_id) == []


def test_worker_fails_the_lost_trial_with_a_reason_and_queues_its_retry(db_url: str) -> None:
    study = _study(db_url)
    lost = _lost_ask(study)
    clock = FakeClock()
    watch = SilentTrialWatch(after_s=5, clock=clock)
    _fail_stale(study, watch, max_retries=1)
    assert study._storage.get_trial(lost).state == TrialState.RUNNING
    clock.now = 5.0
    _fail_stale(study, watch, max_retries=1)
    _fail_stale(study, watch, max_retries=1)  # a second look queues nothing more
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert "no heartbeat" in trials[0].user_attrs[ATTR_REASON]
    assert trials[1].system_attrs["failed_trial"] == trials[0].number


def test_journal_store_has_no_heartbeats(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path / "s.journal"))
    study = optuna.create_study(storage=storage)
    study.ask()
    assert never_beat_trial_ids(storage, study._study_id) is None
