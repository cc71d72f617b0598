"""Checkpoint retention: keep the files of the K best trials, so a 1,000-trial study does not
fill the disk. The best trial's checkpoint is never deleted."""

from __future__ import annotations

import logging

import optuna
from optuna.artifacts._protocol import ArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger(__name__)

ATTR_CHECKPOINT = "hpo.checkpoint"
ATTR_DELETED = "hpo.deleted_checkpoints"  # study attr: trial numbers whose file was removed


def _ranked(study: optuna.Study) -> list[FrozenTrial]:
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None]
    return sorted(done, key=lambda t: (-(t.value or 0.0), t.number))


def ranks_in_top(study: optuna.Study, value: float, keep: int) -> bool:
    """Would a trial with ``value`` be among the ``keep`` best complete trials?"""
    ranked = _ranked(study)
    return len(ranked) < keep or value > (ranked[keep - 1].value or 0.0)


def enforce(study: optuna.Study, store: ArtifactStore, keep: int) -> list[int]:
    """Delete checkpoint files of complete trials outside the ``keep`` best; returns the trial
    numbers whose files were deleted now."""
    deleted = set(study.user_attrs.get(ATTR_DELETED, []))
    stored = [t for t in _ranked(study) if ATTR_CHECKPOINT in t.user_attrs]
    newly = []
    for t in stored[keep:]:
        if t.number in deleted:
            continue
        try:
            store.remove(t.user_attrs[ATTR_CHECKPOINT])
        except ArtifactNotFound:
            pass  # another worker removed it first
        newly.append(t.number)
    if newly:
        study.set_user_attr(ATTR_DELETED, sorted(deleted | set(newly)))
        log.debug("deleted checkpoints of trials %s (keeping the %d best)", newly, keep)
    return newly
