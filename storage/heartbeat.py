"""Running trials that never sent a heartbeat.

Optuna's stale-trial check only looks at trials with a heartbeat row. A trial whose ``ask``
committed on the server while the reply was lost (a database restart, a network cut), or whose
worker died between ``ask`` and its first heartbeat, has no row: Optuna never fails it, it stays
RUNNING for ever, and every worker waiting for the study's budget waits with it. This module
finds such trials.

Ages are measured on this process's monotonic clock from when it first saw the trial silent, so
clocks and time zones of other machines never matter.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import TrialState


def never_beat_trial_ids(storage: BaseStorage, study_id: int) -> set[int] | None:
    """RUNNING trials of the study without a heartbeat row; None for stores without heartbeats."""
    backend = getattr(storage, "_backend", storage)  # Optuna wraps RDBStorage in a cache
    if not isinstance(backend, RDBStorage):
        return None
    trial, beat = models.TrialModel, models.TrialHeartbeatModel
    with _create_scoped_session(backend.scoped_session) as session:
        rows = (session.query(trial.trial_id)
                .outerjoin(beat, beat.trial_id == trial.trial_id)
                .filter(trial.study_id == study_id, trial.state == TrialState.RUNNING,
                        beat.trial_id.is_(None))
                .all())
    return {row[0] for row in rows}


class SilentTrialWatch:
    """Remembers when each heartbeat-less RUNNING trial was first seen; ``due`` returns those
    silent for ``after_s`` seconds. A live trial gets its first heartbeat right after ``ask``,
    so ``after_s`` (grace period plus a margin for a slow sampler) only has to outlast that."""

    def __init__(self, after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.after_s = after_s
        self._clock = clock
        self._first_seen: dict[int, float] = {}

    def due(self, storage: BaseStorage, study_id: int) -> list[int]:
        silent = never_beat_trial_ids(storage, study_id)
        if not silent:
            self._first_seen.clear()
            return []
        now = self._clock()
        self._first_seen = {i: self._first_seen.get(i, now) for i in silent}
        return sorted(i for i, seen in self._first_seen.items() if now - seen >= self.after_s)
