"""Orchestration: study configuration, search space, objective, workers, export, CLI."""

from hpo.config import StudyConfig
from hpo.errors import USER_ERRORS, HpoError
from hpo.export import ExportResult, export_trial
from hpo.predict import Predictions, load_exported, predict
from hpo.space import SearchSpace, default_params, sample
from hpo.study import LoadedStudy, create_or_resume, create_study, load_study
from hpo.worker import WorkerSummary, run_worker

__all__ = [
    "USER_ERRORS",
    "ExportResult",
    "HpoError",
    "LoadedStudy",
    "Predictions",
    "SearchSpace",
    "StudyConfig",
    "WorkerSummary",
    "create_or_resume",
    "create_study",
    "default_params",
    "export_trial",
    "load_exported",
    "load_study",
    "predict",
    "run_worker",
    "sample",
]
