"""One worker process: load the study and its data once, then run trials until the budget is
spent (for the whole study, across all workers and machines)."""

from __future__ import annotations

import logging
import os
import signal
import socket
from dataclasses import dataclass
from types import FrameType

import optuna
import torch
from optuna.trial import TrialState

from hpo.errors import HpoError
from hpo.objective import ATTR_REASON, Objective, TrialFailed, counted_trials
from hpo.study import load_study
from storage import open_artifact_store
from trainers import load_dataset, resolve_device

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_ERRORS = 3


@dataclass
class WorkerSummary:
    ran: int = 0
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    interrupted: bool = False


class _Stop(KeyboardInterrupt):
    """Raised from SIGTERM so Optuna marks the running trial FAIL instead of leaving it RUNNING."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Stop()


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def budget_left(study: optuna.Study, trials: int) -> int:
    return trials - len(counted_trials(study))


def run_worker(storage_url: str, study_name: str, device: str = "auto",
               max_trials: int | None = None, threads: int | None = None,
               artifacts: str | None = None) -> WorkerSummary:
    """Run trials until the study's budget (or this worker's ``max_trials``) is reached."""
    if threads:
        torch.set_num_threads(threads)
    loaded = load_study(storage_url, study_name, sampler_seed=None)
    study, config = loaded.study, loaded.config
    dev = resolve_device(device)
    dataset = load_dataset(config.data)
    bounds = config.bounds(dataset)
    store = open_artifact_store(artifacts or os.environ.get("HPO_ARTIFACTS") or config.artifacts)
    objective = Objective(config, dataset, bounds, dev, store, worker_id())
    summary = WorkerSummary()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    errors = 0
    try:
        while budget_left(study, config.trials) > 0:
            if max_trials is not None and summary.ran >= max_trials:
                break
            try:
                study.optimize(objective, n_trials=1, catch=(TrialFailed,),
                               gc_after_trial=False, show_progress_bar=False)
                errors = 0
            except KeyboardInterrupt:
                summary.interrupted = True
                break
            except Exception as e:  # a bug or resource problem; Optuna recorded the FAIL
                errors += 1
                last = study.get_trials(deepcopy=False)[-1]
                if last.state == TrialState.FAIL and ATTR_REASON not in last.user_attrs:
                    study._storage.set_trial_user_attr(last._trial_id, ATTR_REASON,
                                                       f"{type(e).__name__}: {e}")
                log.error("trial failed with %s: %s", type(e).__name__, e)
                if errors >= MAX_CONSECUTIVE_ERRORS:
                    raise HpoError(f"{errors} trials in a row failed with errors (last: "
                                   f"{type(e).__name__}: {e}); fix the cause and restart the "
                                   "worker") from e
            summary.ran += 1
            mine = _my_last_trial(study, objective.worker_id)
            if mine is not None:
                _log_outcome(mine, config.metric)
                if mine.state == TrialState.COMPLETE:
                    summary.complete += 1
                elif mine.state == TrialState.PRUNED:
                    summary.pruned += 1
                else:
                    summary.failed += 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    return summary


def _my_last_trial(study: optuna.Study, wid: str) -> optuna.trial.FrozenTrial | None:
    mine = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("hpo.worker") == wid]
    return mine[-1] if mine else None


def _log_outcome(t: optuna.trial.FrozenTrial, metric: str) -> None:
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
