"""One trial's coordination calls, timed: shared by the storage benchmarks."""

from __future__ import annotations

import time

import optuna

REPORTS = 10


def timed_trial(study: optuna.Study, ask: list[float], report: list[float],
                tell: list[float], epoch_s: float = 0.0) -> float:
    """ask (with three suggestions), REPORTS x (report + should_prune) until pruned, tell;
    appends each call's seconds to the given lists and returns the trial's total storage
    seconds. epoch_s > 0 sleeps that long before each report, standing in for an epoch of
    training on a GPU, so a fleet's load on the database is a real fleet's, not a flood."""
    before = len(report)
    t0 = time.perf_counter()
    trial = study.ask()
    lr = trial.suggest_float("lr", 1e-5, 1e-2, log=True)
    trial.suggest_int("freeze_depth", 0, 5)
    trial.suggest_float("aug_strength", 0, 1)
    ask.append(time.perf_counter() - t0)
    pruned = False
    for step in range(REPORTS):
        if epoch_s > 0:
            time.sleep(epoch_s)
        t0 = time.perf_counter()
        trial.report(lr * (step + 1), step)
        pruned = trial.should_prune()
        report.append(time.perf_counter() - t0)
        if pruned:
            break
    t0 = time.perf_counter()
    if pruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, lr)
    tell.append(time.perf_counter() - t0)
    return ask[-1] + sum(report[before:]) + tell[-1]
