"""Bridge one Optuna trial to ``trainers.fine_tune``: sample, train, report, keep the best."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import timm
import torch
from optuna.artifacts import upload_artifact
from optuna.artifacts._protocol import ArtifactStore
from optuna.trial import TrialState
from optuna_dashboard import save_note

from hpo import retention
from hpo.config import StudyConfig
from hpo.retention import ATTR_CHECKPOINT
from hpo.space import SpaceBounds, sample
from trainers import (
    Dataset,
    FinetuneResult,
    Hyperparams,
    NonFiniteLossError,
    TrainerError,
    fine_tune,
)
from trainers.checkpoint import save_checkpoint
from trainers.finetune import TrainState

log = logging.getLogger(__name__)

ATTR_SEED = "hpo.seed"
ATTR_DEVICE = "hpo.device"
ATTR_WORKER = "hpo.worker"
ATTR_BEST_EPOCH = "hpo.best_epoch"
ATTR_VAL = "hpo.val_metrics"
ATTR_EPOCHS = "hpo.epochs_run"
ATTR_IPS = "hpo.images_per_s"
ATTR_HPARAMS = "hpo.hparams"
ATTR_REASON = "hpo.reason"
ATTR_SECONDS = "hpo.seconds"
ATTR_RESUMED = "hpo.resumed_from"
ATTR_RETRY_OF = "hpo.retry_of"
ATTR_RETRYABLE = "hpo.retryable"
ATTR_COMPUTE = "hpo.compute"
INTERRUPTED = "interrupted (SIGTERM/SIGINT, e.g. preemption); queued for retry"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class TrialFailed(Exception):
    """A trial that ended for a recorded reason (diverged, over budget); the worker goes on."""


def failure_reason(trial: optuna.trial.FrozenTrial,
                   trials: list[optuna.trial.FrozenTrial]) -> str | None:
    """Why a FAIL trial failed: its recorded reason, or (for trials failed by the heartbeat
    check, which cannot carry attributes once failed) the retry that replaced it."""
    if trial.user_attrs.get(ATTR_REASON):
        return str(trial.user_attrs[ATTR_REASON])
    for t in trials:
        if trial.number in (t.user_attrs.get(ATTR_RETRY_OF) or
                            t.system_attrs.get("retry_history") or []):
            return f"its worker stopped sending heartbeats; retried as trial {t.number}"
    return None


def counted_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that use up the budget: finished ones and those running now."""
    return study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))


def _system_attrs(trial: optuna.Trial) -> dict[str, Any]:
    return trial.study._storage.get_trial_system_attrs(trial._trial_id)


def retry_history(trial: optuna.Trial) -> list[int]:
    """Numbers of the failed trials this one retries (Optuna's retry callback records them)."""
    return list(_system_attrs(trial).get("retry_history") or [])


def origin_number(trial: optuna.Trial) -> int:
    return int(_system_attrs(trial).get("failed_trial", trial.number))


class Objective:
    """Callable objective for one worker: data is loaded once and reused by every trial."""

    def __init__(self, config: StudyConfig, dataset: Dataset, bounds: SpaceBounds,
                 device: torch.device, artifact_store: ArtifactStore, worker_id: str,
                 resume_dir: Path | None = None) -> None:
        self.config = config
        self.dataset = dataset
        self.bounds = bounds
        self.device = device
        self.artifact_store = artifact_store
        self.worker_id = worker_id
        self.resume_dir = resume_dir
        self.current_trial_id: int | None = None  # known even if the database is unreachable

    def resume_path(self, trial: optuna.Trial) -> Path | None:
        """One file per original trial: its retries find it under the same name."""
        if self.resume_dir is None:
            return None
        return self.resume_dir / trial.study.study_name / f"trial-{origin_number(trial)}.pt"

    def _load_resume(self, trial: optuna.Trial, path: Path | None) -> TrainState | None:
        history = retry_history(trial)
        if history:
            trial.set_user_attr(ATTR_RETRY_OF, history)
        if path is None or not history or not path.is_file():
            return None
        try:
            state = TrainState.load(path)
        except Exception as e:  # a torn or foreign file: start over rather than fail the trial
            log.warning("cannot resume trial %d from %s (%s); starting over", trial.number,
                        path, e)
            return None
        trial.set_user_attr(ATTR_RESUMED, {"trial": history[-1], "epoch": state.epoch})
        log.info("trial %d resumes trial %d after epoch %d", trial.number, history[-1],
                 state.epoch)
        return state

    def _over_budget(self, trial: optuna.Trial) -> bool:
        """Exact budget: a trial started while the study already had N others counted fails."""
        ahead = [t for t in counted_trials(trial.study) if t.number < trial.number]
        return len(ahead) >= self.config.trials

    def __call__(self, trial: optuna.Trial) -> float:
        self.current_trial_id = trial._trial_id
        if trial.user_attrs.get(ATTR_REASON):  # copied from the trial this one retries
            trial.set_user_attr(ATTR_REASON, None)
        hp = sample(trial, self.bounds)
        seed = self.config.seed + origin_number(trial)  # a retry trains like its original
        for key, attr in ((ATTR_SEED, seed), (ATTR_DEVICE, str(self.device)),
                          (ATTR_WORKER, self.worker_id), (ATTR_HPARAMS, hp.to_dict())):
            trial.set_user_attr(key, attr)
        if self._over_budget(trial):
            trial.set_user_attr(ATTR_REASON, "study budget already reached when it started")
            raise TrialFailed("budget reached")
        metric = self.config.metric
        started = time.perf_counter()
        path = self.resume_path(trial)
        resume = self._load_resume(trial, path)
        if resume is not None:  # the pruner sees the resumed epochs as if they ran here
            for past in resume.history:
                trial.report(past[metric], int(past["epoch"]))

        def report(epoch: int, metrics: dict[str, float]) -> bool:
            trial.report(metrics[metric], epoch)
            trial.set_user_attr(ATTR_EPOCHS, epoch + 1)
            return trial.should_prune()

        def checkpoint(state: TrainState) -> None:
            assert path is not None
            path.parent.mkdir(parents=True, exist_ok=True)
            state.save(path)

        try:
            result = fine_tune(self.dataset, self.config.train_spec(seed), hp, self.device,
                               report=report, resume=resume,
                               checkpoint=checkpoint if path is not None else None)
        except NonFiniteLossError as e:
            trial.set_user_attr(ATTR_REASON, str(e))
            self._drop_resume(path)
            self._note(trial, hp, f"failed: {e}")
            raise TrialFailed(str(e)) from e
        except (Exception, KeyboardInterrupt) as e:
            # Record why while the trial is still RUNNING (Optuna freezes a finished trial's
            # attributes); the worker then queues the retry, which resumes from `path`.
            reason = INTERRUPTED if isinstance(e, KeyboardInterrupt) else \
                f"{type(e).__name__}: {str(e)[:200]}"
            with contextlib.suppress(Exception):
                trial.set_user_attr(ATTR_REASON, reason)
                # a bad setting (weights, data) fails every retry the same way
                trial.set_user_attr(ATTR_RETRYABLE, not isinstance(e, TrainerError))
                self._note(trial, hp, f"failed: {reason}")
            raise
        self._drop_resume(path)  # finished: nothing left to resume
        seconds = time.perf_counter() - started
        self._record(trial, result, seconds)
        value = result.best_metrics[metric]
        if result.stopped_early:
            last = result.history[-1][metric]
            reason = (f"pruned after epoch {result.epochs_run}: val {metric} {last:.4f} was "
                      f"below what the pruner keeps")
            trial.set_user_attr(ATTR_REASON, reason)
            self._note(trial, hp, reason, result)
            raise optuna.TrialPruned(reason)
        self._note(trial, hp, f"complete: val {metric} {value:.4f} at epoch "
                   f"{result.best_epoch + 1}", result)
        keep = self.config.keep_checkpoints
        if retention.ranks_in_top(trial.study, value, keep):
            self._store_checkpoint(trial, result)
            retention.enforce(trial.study, self.artifact_store, keep - 1)  # room for this one
        return value

    def _note(self, trial: optuna.Trial, hp: Hyperparams, status: str,
              result: FinetuneResult | None = None) -> None:
        """The trial's note in optuna-dashboard: what ran, where, how fast, how it ended."""
        lines = [f"**Trial {trial.number}**: {status}", "",
                 f"- lr {hp.lr:.3g}, freeze_depth {hp.freeze_depth}, aug_strength "
                 f"{hp.aug_strength:.2f}, image_size {hp.image_size}",
                 f"- device {self.device}, worker {self.worker_id}"]
        if result is not None:
            val = ", ".join(f"{k} {v:.4f}" for k, v in result.best_metrics.items())
            lines += [f"- epochs run {result.epochs_run} of {self.config.epochs}, "
                      f"{result.images_per_s:.0f} images/s ({result.compute})",
                      f"- best epoch {result.best_epoch + 1}: {val}"]
        with contextlib.suppress(Exception):  # a note must never fail a trial
            save_note(trial, "\n".join(lines))

    @staticmethod
    def _drop_resume(path: Path | None) -> None:
        if path is not None:
            path.unlink(missing_ok=True)

    def _record(self, trial: optuna.Trial, result: FinetuneResult, seconds: float) -> None:
        trial.set_user_attr(ATTR_BEST_EPOCH, result.best_epoch)
        trial.set_user_attr(ATTR_VAL, {k: round(v, 6) for k, v in result.best_metrics.items()})
        trial.set_user_attr(ATTR_EPOCHS, result.epochs_run)
        trial.set_user_attr(ATTR_IPS, round(result.images_per_s, 1))
        trial.set_user_attr(ATTR_SECONDS, round(seconds, 2))
        trial.set_user_attr(ATTR_COMPUTE, result.compute)

    def checkpoint_meta(self, trial: optuna.Trial, result: FinetuneResult) -> dict[str, Any]:
        info = result.model_info
        return {
            "model": info.name,
            "num_classes": info.num_classes,
            "classes": self.dataset.classes,
            "in_chans": info.in_chans,
            "data_channels": self.dataset.channels,
            "image_size": result.hparams.image_size,
            "mean": list(info.mean),
            "std": list(info.std),
            "weights_source": info.weights,
            "compute": result.compute,
            "hparams": result.hparams.to_dict(),
            "study": trial.study.study_name,
            "trial": trial.number,
            "epoch": result.best_epoch,
            "metric": self.config.metric,
            "val_metrics": result.best_metrics,
            "data": self.config.data,
            "versions": {"torch": torch.__version__, "timm": timm.__version__,
                         "optuna": optuna.__version__},
        }

    def _store_checkpoint(self, trial: optuna.Trial, result: FinetuneResult) -> None:
        with tempfile.TemporaryDirectory(prefix="hpo-ckpt-") as tmp:
            path = os.path.join(tmp, f"trial-{trial.number}-best.safetensors")
            save_checkpoint(path, result.state, self.checkpoint_meta(trial, result))
            artifact_id = upload_artifact(artifact_store=self.artifact_store, file_path=path,
                                          study_or_trial=trial)
        trial.set_user_attr(ATTR_CHECKPOINT, artifact_id)
