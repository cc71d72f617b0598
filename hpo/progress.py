"""A study's progress as one line: live on a terminal, one line per change in logs."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO

import optuna
from optuna.trial import TrialState


@dataclass(frozen=True)
class Progress:
    complete: int
    pruned: int
    failed: int
    running: int
    budget: int
    best_value: float | None
    best_trial: int | None
    epochs: tuple[tuple[int, int], ...] = ()  # (trial, epochs done) of running trials
    images_per_s: float | None = None  # mean over the last finished trials

    def key(self) -> tuple[object, ...]:
        """What counts as a change in logs: trial outcomes and the best, not epoch ticks."""
        return (self.complete, self.pruned, self.failed, self.running, self.best_value)

    @property
    def finished(self) -> int:
        return self.complete + self.pruned

    def line(self, metric: str, elapsed: float) -> str:
        best = (f"best {metric} {self.best_value:.4f} (trial {self.best_trial})"
                if self.best_value is not None else "no complete trial yet")
        m, s = divmod(int(elapsed), 60)
        line = (f"trials {self.finished}/{self.budget} finished ({self.complete} complete, "
                f"{self.pruned} pruned, {self.failed} failed, {self.running} running), {best}, "
                f"{m}:{s:02d} elapsed")
        if self.epochs:
            line += "; now " + " ".join(f"t{n}@ep{e}" for n, e in self.epochs[:4])
        if self.images_per_s:
            line += f"; {self.images_per_s:.0f} img/s"
        return line


def progress_of(study: optuna.Study, budget: int) -> Progress:
    trials = study.get_trials(deepcopy=False)
    count = {s: 0 for s in TrialState}
    for t in trials:
        count[t.state] += 1
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    best = max(done, key=lambda t: t.value or 0.0) if done else None
    running = tuple((t.number, int(t.user_attrs.get("hpo.epochs_run", 0)))
                    for t in trials if t.state == TrialState.RUNNING)
    speeds = [float(t.user_attrs["hpo.images_per_s"]) for t in trials
              if t.state.is_finished() and t.user_attrs.get("hpo.images_per_s")][-5:]
    return Progress(count[TrialState.COMPLETE], count[TrialState.PRUNED], count[TrialState.FAIL],
                    count[TrialState.RUNNING], budget, best.value if best else None,
                    best.number if best else None, running,
                    sum(speeds) / len(speeds) if speeds else None)


class ProgressView:
    """Rewrites one line on a terminal; prints only changes otherwise (log-friendly)."""

    def __init__(self, metric: str, stream: TextIO | None = None) -> None:
        self.metric = metric
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._last: tuple[tuple[object, ...], str] | None = None

    def update(self, p: Progress, extra: str = "") -> None:
        line = p.line(self.metric, time.monotonic() - self.started)
        if extra:
            line += f" | {extra}"
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            self.stream.flush()
        elif (p.key(), extra) != self._last:
            self.stream.write(line + "\n")
            self.stream.flush()
        self._last = (p.key(), extra)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
