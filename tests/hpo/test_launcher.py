"""The local launcher: restarts, crash loops, dead workers' trials, time limits (journal store,
no database server needed)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from hpo import launcher as launcher_mod
from hpo.cli import main
from hpo.errors import HpoError
from hpo.launcher import Launcher, WorkerSlot, plan_slots
from hpo.objective import failure_reason
from tests.hpo.fleet import create, load, spawn, wait_all, wait_for


def test_slot_planning_errors_name_the_fix() -> None:
    with pytest.raises(HpoError, match="no CUDA GPU is visible.*--cpu-workers"):
        plan_slots("all", 1, 0)  # this machine has no GPU
    with pytest.raises(HpoError, match="nothing to launch"):
        plan_slots(None, 1, 0)
    slots = plan_slots(None, 1, 3)
    assert [s.device for s in slots] == ["cpu"] * 3 and slots[2].label == "w2@cpu"


def test_crash_loop_gives_up_with_a_clear_message(
        tmp_path: Path, breast_npz: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    url = str(tmp_path / "s.journal")
    create(url, "loop", breast_npz)
    monkeypatch.setattr(launcher_mod, "BACKOFF_S", (0,))
    monkeypatch.setattr(launcher_mod, "POLL_S", 0.05)
    launcher = Launcher(url, "loop", [WorkerSlot(0, "cpu", 1)])
    monkeypatch.setattr(launcher, "_command",
                        lambda slot: [sys.executable, "-c", "import sys; sys.exit(3)"])
    assert launcher.run() == 1
    gave_up = launcher.workers[0].gave_up or ""
    assert "crashed 5 times in a row" in gave_up and "[3, 3, 3, 3, 3]" in gave_up


@pytest.mark.slow
def test_killed_worker_is_restarted_and_its_trial_resumed(tmp_path: Path,
                                                          breast_npz: Path) -> None:
    url = str(tmp_path / "s.journal")
    create(url, "k9", breast_npz, "--pruner", "none", trials=2, epochs=10, size=40)
    log = tmp_path / "launch.log"
    proc = spawn(["launch", "--storage", url, "--study", "k9", "--gpus", "none",
                  "--cpu-workers", "1"], log)
    study = load(url, "k9")

    def training() -> bool:
        running = study.get_trials(states=(TrialState.RUNNING,))
        # 3 reported epochs: epoch 1's checkpoint (written after its report) is on disk
        return bool(running) and len(running[0].intermediate_values) >= 3

    wait_for(training, 120, "a trial with three epochs")
    victim = study.get_trials(states=(TrialState.RUNNING,))[0]
    pid = int(victim.user_attrs["hpo.worker"].rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)
    assert wait_all([proc], 300, [log]) == [0]
    trials = load(url, "k9").trials
    first = trials[victim.number]
    assert first.state == TrialState.FAIL
    assert "worker process died (exit code -9)" in (failure_reason(first, trials) or "")
    retry = next(t for t in trials if t.user_attrs.get("hpo.retry_of") == [victim.number])
    assert retry.state == TrialState.COMPLETE and retry.params == first.params
    assert retry.user_attrs["hpo.resumed_from"]["epoch"] >= 1
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 2
    assert "restarting" in log.read_text()


def test_study_time_limit_stops_workers(tmp_path: Path, breast_npz: Path) -> None:
    url = str(tmp_path / "s.journal")
    create(url, "late", breast_npz, "--time-limit", "1s")
    time.sleep(1.2)
    r = CliRunner().invoke(main, ["worker", "--storage", url, "--study", "late"])
    assert r.exit_code == 0, r.output
    assert load(url, "late").trials[0].state == TrialState.WAITING  # nothing started
    bad = CliRunner().invoke(main, ["worker", "--storage", url, "--study", "late",
                                    "--time-limit", "soon"])
    assert bad.exit_code == 2 and "not a duration" in bad.output
