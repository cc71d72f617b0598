"""One worker process: load the study and its data once, then run trials until the budget is
spent (for the whole study, across all workers and machines).

Failure handling, all through Optuna's own machinery: database stores send heartbeats, and a
worker that finds a trial silent for the grace period fails it and Optuna's
``RetryHeartbeatStaleTrialCallback`` queues a retry with the same hyperparameters; SIGTERM or
SIGINT (preemption, Ctrl-C) fails the running trial and queues its retry at once; the retry
resumes from the last epoch checkpoint. Storage outages are waited out with backoff.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import optuna
import sqlalchemy.exc
import torch
from optuna.exceptions import ExperimentalWarning, StorageInternalError
from optuna.storages import fail_stale_trials
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from hpo import retention
from hpo.errors import USER_ERRORS, HpoError
from hpo.objective import (
    ATTR_REASON,
    ATTR_RETRYABLE,
    INTERRUPTED,
    Objective,
    TrialFailed,
    counted_trials,
)
from hpo.progress import progress_of
from hpo.study import LoadedStudy, load_study, study_deadline
from storage import (
    SilentTrialWatch,
    enable_heartbeat,
    open_artifact_store,
    open_storage,
    retry_callback,
)
from trainers import load_dataset, resolve_device

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_ERRORS = 3
STORAGE_ERRORS = (StorageInternalError, sqlalchemy.exc.OperationalError,
                  sqlalchemy.exc.InterfaceError)
STORAGE_RETRY_DELAYS = (1, 2, 4, 8, 15, 30, 30, 30, 30, 30)  # ~3 minutes in all
SILENT_MARGIN_S = 30.0  # beyond the grace period, before a heartbeat-less trial counts as lost
NEVER_STARTED = "lost before it started (no heartbeat; its worker lost the database meanwhile)"


@dataclass
class WorkerSummary:
    ran: int = 0
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    interrupted: bool = False
    stopped_by: str = "budget"


class Stop(KeyboardInterrupt):
    """Raised by SIGTERM so Optuna marks the running trial FAIL instead of leaving it RUNNING."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Stop()


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def budget_left(study: optuna.Study, trials: int) -> int:
    return trials - len(counted_trials(study))


def open_worker_study(storage_url: str, study_name: str) -> LoadedStudy:
    """Load the study, then switch on heartbeats with the study's own settings (one
    connection pool per process)."""
    storage = open_storage(storage_url, create=False)
    config = load_study(storage_url, study_name, storage=storage).config
    enable_heartbeat(storage, config.heartbeat_interval, config.grace_period,
                     config.max_retries)
    return load_study(storage_url, study_name, sampler_seed=None, storage=storage)


def fail_and_retry(study: optuna.Study, trial: FrozenTrial, reason: str,
                   max_retries: int) -> None:
    """Make sure ``trial`` is FAIL (recording why, while that is still possible) and queue
    Optuna's retry of it, once."""
    storage = study._storage
    if trial.state == TrialState.RUNNING:
        try:
            storage.set_trial_user_attr(trial._trial_id, ATTR_REASON, reason)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            return  # another process finished or failed it meanwhile (and retried it)
    if _already_retried(study, trial.number):
        return
    retry_callback(max_retries)(study, storage.get_trial(trial._trial_id))


def _already_retried(study: optuna.Study, number: int) -> bool:
    return any(number in (t.system_attrs.get("retry_history") or [])
               for t in study.get_trials(deepcopy=False))


def _fail_stale(study: optuna.Study, watch: SilentTrialWatch, max_retries: int) -> None:
    """Optuna's stale-trial check, plus trials that never sent a heartbeat at all (see
    ``storage.heartbeat``), which Optuna's check cannot see."""
    if not is_heartbeat_enabled(study._storage):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        fail_stale_trials(study)
    for trial_id in watch.due(study._storage, study._study_id):
        trial = study._storage.get_trial(trial_id)
        fail_and_retry(study, trial, NEVER_STARTED, max_retries)
        log.info("trial %d never started (no heartbeat in %.0f s); failed and queued for retry",
                 trial.number, watch.after_s)


def run_worker(storage_url: str, study_name: str, device: str = "auto",
               max_trials: int | None = None, threads: int | None = None,
               artifacts: str | None = None, time_limit: float | None = None) -> WorkerSummary:
    """Run trials until the study's budget, its time limit, or this worker's limits."""
    if threads:
        torch.set_num_threads(threads)
    loaded = open_worker_study(storage_url, study_name)
    study, config = loaded.study, loaded.config
    dev = resolve_device(device)
    dataset = load_dataset(config.data)
    bounds = config.bounds(dataset)
    artifact_dir = Path(artifacts or os.environ.get("HPO_ARTIFACTS") or config.artifacts)
    store = open_artifact_store(artifact_dir)
    objective = Objective(config, dataset, bounds, dev, store, worker_id(),
                          resume_dir=artifact_dir / "resume")
    deadline = study_deadline(loaded)
    if time_limit is not None:
        deadline = min(deadline or float("inf"), time.time() + time_limit)
    summary = WorkerSummary()
    started = time.time()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    errors, outage = 0, 0
    watch = SilentTrialWatch(config.grace_period + SILENT_MARGIN_S)
    try:
        while True:
            try:
                _fail_stale(study, watch, config.max_retries)
                if deadline is not None and time.time() >= deadline:
                    summary.stopped_by = "time limit"
                    break
                if max_trials is not None and summary.ran >= max_trials:
                    summary.stopped_by = "worker trial limit"
                    break
                if budget_left(study, config.trials) <= 0:
                    if is_heartbeat_enabled(study._storage) and _others_running(study):
                        # a running trial may still die and come back as a retry: stay until
                        # it finishes or its heartbeat goes stale
                        time.sleep(min(5.0, config.heartbeat_interval))
                        continue
                    break
                study.optimize(objective, n_trials=1, catch=(TrialFailed,),
                               gc_after_trial=False, show_progress_bar=False)
                errors, outage = 0, 0
            except KeyboardInterrupt:
                summary.interrupted = True
                summary.stopped_by = "signal"
                _retry_current_quietly(study, objective, config.max_retries, INTERRUPTED)
                with contextlib.suppress(Exception):
                    current = _current(study, objective)
                    if current is not None and current.state == TrialState.FAIL:
                        summary.ran += 1
                        summary.failed += 1
                        log.info("trial %d interrupted: failed and queued for retry",
                                 current.number)
                break
            except Exception as e:
                if isinstance(e, USER_ERRORS):
                    _retry_current_quietly(study, objective, config.max_retries, str(e))
                    raise  # a setting every trial would trip over: stop with the message
                if not _is_storage_error(e):
                    errors += 1
                    log.error("trial failed with %s: %s", type(e).__name__, e)
                    _retry_current_quietly(study, objective, config.max_retries,
                                        f"{type(e).__name__}: {e}")
                    if errors >= MAX_CONSECUTIVE_ERRORS:
                        raise HpoError(f"{errors} trials in a row failed with errors (last: "
                                       f"{type(e).__name__}: {e}); fix the cause and restart "
                                       "the worker") from e
                    summary.ran += 1
                    continue
                # The database went away (restart, failover, network): wait it out. Optuna's
                # own error path can fail too then, so look through the exception chain.
                if outage >= len(STORAGE_RETRY_DELAYS):
                    raise HpoError(f"storage unreachable for minutes ({e}); check the database "
                                   "server and restart the worker") from e
                delay = STORAGE_RETRY_DELAYS[outage]
                outage += 1
                log.warning("storage error (%s); retrying in %d s", type(e).__name__, delay)
                time.sleep(delay)
                _retry_current_quietly(study, objective, config.max_retries,
                                    f"storage error: {type(e).__name__}")
                continue
            summary.ran += 1
            _count(summary, study, objective, config.metric)
            retention.enforce(study, store, config.keep_checkpoints)
            log.info("%s", progress_of(study, config.trials).line(config.metric,
                                                                   time.time() - started))
    finally:
        signal.signal(signal.SIGTERM, previous)
    return summary


def _is_storage_error(e: BaseException | None) -> bool:
    seen = 0
    while e is not None and seen < 20:
        if isinstance(e, STORAGE_ERRORS):
            return True
        e = e.__cause__ or e.__context__
        seen += 1
    return False


def _others_running(study: optuna.Study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def _current(study: optuna.Study, objective: Objective) -> FrozenTrial | None:
    if objective.current_trial_id is None:
        return None
    return study._storage.get_trial(objective.current_trial_id)


def _retry_current(study: optuna.Study, objective: Objective, max_retries: int,
                   reason: str) -> None:
    """Fail-and-retry the trial this worker was running if it did not finish."""
    last = _current(study, objective)
    if last is None or last.state not in (TrialState.RUNNING, TrialState.FAIL):
        return
    if last.state == TrialState.FAIL and last.user_attrs.get(ATTR_REASON) \
            and not last.user_attrs.get(ATTR_RETRYABLE):
        return  # a final failure (diverged, over the budget): retrying would not help
    fail_and_retry(study, last, reason, max_retries)
    log.info("trial %d stopped (%s); queued for retry", last.number, reason)


def _retry_current_quietly(study: optuna.Study, objective: Objective, max_retries: int,
                           reason: str) -> None:
    try:
        _retry_current(study, objective, max_retries, reason)
    except Exception as e:
        if not _is_storage_error(e):
            raise
        # still down: the heartbeat (or the next look after the outage) catches the trial


def _count(summary: WorkerSummary, study: optuna.Study, objective: Objective,
           metric: str) -> None:
    mine = _current(study, objective)
    if mine is None:
        return
    _log_outcome(mine, metric)
    if mine.state == TrialState.COMPLETE:
        summary.complete += 1
    elif mine.state == TrialState.PRUNED:
        summary.pruned += 1
    else:
        summary.failed += 1


def _log_outcome(t: FrozenTrial, metric: str) -> None:
    """One line per trial outcome."""
    p = t.params
    desc = (f"lr={p.get('lr', 0):.2e} freeze={p.get('freeze_depth')} "
            f"aug={p.get('aug_strength', 0):.2f} size={p.get('image_size')}")
    if t.state == TrialState.COMPLETE:
        log.info("trial %d complete: val %s %.4f (epoch %s, %s img/s) %s", t.number, metric,
                 t.value, t.user_attrs.get("hpo.best_epoch"), t.user_attrs.get("hpo.images_per_s"),
                 desc)
    else:
        log.info("trial %d %s: %s %s", t.number, t.state.name.lower(),
                 t.user_attrs.get(ATTR_REASON, ""), desc)
