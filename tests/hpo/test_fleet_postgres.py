"""Many worker processes on one PostgreSQL study, and what clusters do to them."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import psycopg
import pytest
from optuna.trial import TrialState

from hpo.objective import failure_reason
from tests.hpo.fleet import create, load, spawn, spawn_worker, wait_all, wait_for
from tests.pg import PostgresServer

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
FAST_HEARTBEAT = ["--heartbeat-interval", "1", "--grace-period", "4"]


def _finished(url: str, name: str) -> list:
    return [t for t in load(url, name).trials if t.state in FINISHED]


def _assert_clean_end(url: str, name: str, budget: int) -> None:
    trials = load(url, name).trials
    assert len({t.number for t in trials}) == len(trials)
    assert len([t for t in trials if t.state in FINISHED]) == budget
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for t in trials:
        if t.state == TrialState.FAIL:
            assert failure_reason(t, trials), t


def test_four_workers_exact_budget_within_the_pool(postgres_url: str, breast_npz: Path,
                                                   tmp_path: Path) -> None:
    create(postgres_url, "four", breast_npz, trials=12)
    peak: dict[str, int] = {}
    done = threading.Event()
    logs = [tmp_path / f"w{i}.log" for i in range(4)]
    procs = [spawn_worker(postgres_url, "four", log) for log in logs]
    names = [f"hpo:{socket.gethostname()}:{p.pid}"[-63:] for p in procs]

    def sample_connections() -> None:
        with psycopg.connect(postgres_url, autocommit=True, application_name="probe") as conn:
            while not done.is_set():
                rows = conn.execute("SELECT application_name, count(*) FROM pg_stat_activity "
                                    "GROUP BY application_name").fetchall()
                for name, n in rows:
                    if name in names:
                        peak[name] = max(peak.get(name, 0), int(n))
                time.sleep(0.1)

    sampler = threading.Thread(target=sample_connections, daemon=True)
    sampler.start()
    codes = wait_all(procs, 400, logs)
    done.set()
    sampler.join(timeout=5)
    assert codes == [0, 0, 0, 0], [log.read_text()[-1500:] for log in logs]
    _assert_clean_end(postgres_url, "four", 12)
    trials = load(postgres_url, "four").trials
    workers = {t.user_attrs.get("hpo.worker") for t in trials}
    assert len(workers) >= 2  # the work really was shared
    configs = [tuple(sorted(t.params.items())) for t in trials if t.params]
    assert len(set(configs)) == len(configs)  # no configuration ran twice
    assert len(peak) == 4, peak  # every worker was seen holding connections ...
    assert max(peak.values()) <= 3, peak  # ... within pool_size 2 + max_overflow 1


def test_kill_9_mid_trial_is_retried_and_resumes_from_its_checkpoint(
        postgres_url: str, breast_npz: Path, tmp_path: Path) -> None:
    create(postgres_url, "kill", breast_npz, *FAST_HEARTBEAT, "--pruner", "none",
           "--artifacts", str(tmp_path / "art"), trials=1, epochs=12, size=48)
    victim = spawn_worker(postgres_url, "kill", tmp_path / "victim.log")
    study = load(postgres_url, "kill")

    def two_epochs_done() -> bool:
        running = study.get_trials(states=(TrialState.RUNNING,))
        return bool(running) and len(running[0].intermediate_values) >= 3

    wait_for(two_epochs_done, 120, "the first trial to report 3 epochs")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = time.monotonic()
    rescuer = spawn_worker(postgres_url, "kill", tmp_path / "rescuer.log")
    wait_for(lambda: load(postgres_url, "kill").trials[0].state == TrialState.FAIL, 30,
             "the stale trial to be failed")
    assert time.monotonic() - killed_at < 4 + 10  # grace period + one look
    assert wait_all([rescuer], 300, [tmp_path / "rescuer.log"]) == [0]

    trials = load(postgres_url, "kill").trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    original, retry = trials
    assert retry.params == original.params
    assert retry.user_attrs["hpo.retry_of"] == [0]
    resumed = retry.user_attrs["hpo.resumed_from"]
    assert resumed["trial"] == 0 and resumed["epoch"] >= 1
    assert sorted(retry.intermediate_values) == list(range(12))
    assert retry.user_attrs["hpo.seed"] == original.user_attrs["hpo.seed"]
    assert not list((tmp_path / "art" / "resume" / "kill").glob("*.pt"))  # cleaned up


def test_postgres_restart_mid_study_loses_nothing(postgres_server: PostgresServer,
                                                  postgres_url: str, breast_npz: Path,
                                                  tmp_path: Path) -> None:
    create(postgres_url, "restart", breast_npz, *FAST_HEARTBEAT, trials=8, epochs=3)
    logs = [tmp_path / f"w{i}.log" for i in range(2)]
    procs = [spawn_worker(postgres_url, "restart", log) for log in logs]
    wait_for(lambda: len(_finished(postgres_url, "restart")) >= 2, 200, "two finished trials")
    postgres_server.restart()
    codes = wait_all(procs, 400, logs)
    assert codes == [0, 0], [log.read_text()[-1500:] for log in logs]
    _assert_clean_end(postgres_url, "restart", 8)
    trials = load(postgres_url, "restart").trials
    retried = {n for t in trials for n in t.user_attrs.get("hpo.retry_of", [])}
    for t in trials:
        if t.state == TrialState.FAIL and "budget" not in t.user_attrs["hpo.reason"]:
            assert t.number in retried, f"trial {t.number} failed and was not retried"


def test_sigterm_to_launch_stops_every_worker_cleanly(postgres_url: str, breast_npz: Path,
                                                      tmp_path: Path) -> None:
    create(postgres_url, "term", breast_npz, *FAST_HEARTBEAT, trials=50, epochs=20, size=48)
    log = tmp_path / "launch.log"
    launcher = spawn(["launch", "--storage", postgres_url, "--study", "term", "--gpus",
                      "none", "--cpu-workers", "2"], log)
    study = load(postgres_url, "term")
    def both_training() -> bool:
        running = study.get_trials(states=(TrialState.RUNNING,))
        return len(running) == 2 and all(t.intermediate_values for t in running)

    wait_for(both_training, 120, "both workers to be training")
    workers = {t.user_attrs["hpo.worker"] for t in study.get_trials(states=(TrialState.RUNNING,))}
    launcher.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert launcher.wait(timeout=30) == 0, log.read_text()[-2000:]
    assert time.monotonic() - started < 30
    host = socket.gethostname()
    for wid in workers:
        name, pid = wid.rsplit(":", 1)
        assert name == host
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)
    trials = load(postgres_url, "term").trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    interrupted = [t for t in trials if t.state == TrialState.FAIL]
    assert len(interrupted) == 2
    assert all("interrupted" in t.user_attrs["hpo.reason"] for t in interrupted)
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert sorted(t.params["lr"] for t in waiting) == sorted(t.params["lr"] for t in interrupted)


def test_enqueued_configuration_runs_once_with_four_simultaneous_workers(
        postgres_url: str, breast_npz: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from hpo.cli import main

    create(postgres_url, "enq", breast_npz, trials=6)
    r = CliRunner().invoke(main, ["study", "enqueue", "enq", "lr=0.000321", "freeze_depth=2",
                                  "aug_strength=0.25", "image_size=28",
                                  "--storage", postgres_url])
    assert r.exit_code == 0, r.output
    logs = [tmp_path / f"w{i}.log" for i in range(4)]
    procs = [spawn_worker(postgres_url, "enq", log) for log in logs]  # within the same second
    assert wait_all(procs, 400, logs) == [0, 0, 0, 0]
    trials = load(postgres_url, "enq").trials
    ran = [t for t in trials if t.params.get("lr") == 0.000321]
    assert len(ran) == 1 and ran[0].params["freeze_depth"] == 2
    defaults = [t for t in trials if t.params.get("lr") == 1e-3]
    assert len(defaults) == 1
    _assert_clean_end(postgres_url, "enq", 6)

