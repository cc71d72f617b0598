"""Create and load hpo studies: an Optuna study whose user attrs hold the StudyConfig."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage

from hpo.config import CONFIG_ATTR, StudyConfig
from hpo.errors import HpoError
from hpo.space import SearchSpace, SpaceBounds, default_params
from storage import (
    ENV_ARTIFACTS,
    check_artifact_dir,
    default_artifact_dir,
    open_storage,
    parse_storage,
    redact,
)
from trainers import Dataset, load_dataset
from trainers.datacheck import check_data

log = logging.getLogger(__name__)

CREATED_ATTR = "hpo.created_at"

# Settings that define what a study is; resuming with different ones would mix experiments.
IDENTITY_FIELDS = ("data", "model", "weights", "epochs", "batch_size", "metric", "space",
                   "hflip", "vflip")


@dataclass
class LoadedStudy:
    study: optuna.Study
    config: StudyConfig
    storage_url: str


def check_study_name(name: str) -> None:
    if not name.strip() or name != name.strip() or any(c in name for c in "\n\r\t"):
        raise HpoError(f"study name {name!r} is empty or has surrounding/control whitespace; "
                       "pass a name such as chest-resnet18")
    if any(c in name for c in "/\\") or name in (".", ".."):
        raise HpoError(f"study name {name!r} would be a path (it names a checkpoint folder); "
                       "pass a name without / or \\, such as chest-resnet18")
    if len(name) > 200:
        raise HpoError(f"study name is {len(name)} characters long; keep it under 200")


def default_study_name(data: str, model: str) -> str:
    stem = Path(data).name
    for suffix in (".npz",):
        stem = stem.removesuffix(suffix)
    return f"{stem}-{model}".replace("/", "-")


def study_names(storage: BaseStorage) -> list[str]:
    return sorted(s.study_name for s in optuna.get_all_study_summaries(storage,
                                                                         include_best_trial=False))


def resolve_artifacts(storage_url: str, artifacts: str | None) -> str:
    chosen = artifacts or os.environ.get(ENV_ARTIFACTS) or default_artifact_dir(storage_url)
    return str(Path(chosen).expanduser().resolve())


def prepare_config(config: StudyConfig, storage_url: str, artifacts: str | None = None,
                   allow_data_issues: bool = False) -> tuple[StudyConfig, Dataset, SpaceBounds]:
    """Validate a new study's config against its data and model before anything is written."""
    config.check()
    report = check_data(config.data)
    for warning in report.warnings(config.metric):
        log.warning("data: %s", warning)
    problems = report.problems()
    if problems and not allow_data_issues:
        raise HpoError(f"data check failed for {config.data}: {'; '.join(problems)}; fix the "
                       "data (see `hpo data check`) or pass --allow-data-issues")
    dataset = load_dataset(config.data)
    bounds, source = config.check_against(dataset)
    log.info("weights: %s", source)
    data = config.data
    if Path(data).expanduser().exists():  # store absolute paths: workers may start elsewhere
        data = str(Path(data).expanduser().resolve())
    weights = config.weights
    if weights not in (None, "none"):
        weights = str(Path(weights).expanduser().resolve())
    artifact_dir = resolve_artifacts(storage_url, artifacts)
    check_artifact_dir(artifact_dir)
    config = config.with_updates(data=data, weights=weights, artifacts=artifact_dir)
    return config, dataset, bounds


def create_study(storage_url: str, name: str, config: StudyConfig,
                 artifacts: str | None = None, allow_data_issues: bool = False) -> LoadedStudy:
    """Create ``name`` with a validated config and one default configuration enqueued.

    Everything is checked first, so a bad input never leaves a half-created study behind.
    """
    check_study_name(name)
    config, _, bounds = prepare_config(config, storage_url, artifacts, allow_data_issues)
    storage = open_storage(storage_url)
    if name in study_names(storage):
        raise HpoError(f"study {name!r} already exists in {redact(storage_url)}; pick another "
                       "name, or resume it with `hpo worker`/`hpo run`")
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    try:
        study.set_user_attr(CONFIG_ATTR, config.to_json())
        study.set_user_attr(CREATED_ATTR, time.time())
        study.enqueue_trial(default_params(bounds), user_attrs={"hpo.origin": "default"})
    except BaseException:
        optuna.delete_study(study_name=name, storage=storage)
        raise
    log.info("created study %s in %s", name, redact(storage_url))
    return LoadedStudy(study, config, storage_url)


def load_study(storage_url: str, name: str, sampler_seed: int | None = None,
               storage: BaseStorage | None = None) -> LoadedStudy:
    storage = storage or open_storage(storage_url, create=False)
    names = study_names(storage)
    if name not in names:
        known = f"studies there: {', '.join(names)}" if names else "it holds no studies"
        raise HpoError(f"study {name!r} not found in {redact(storage_url)} ({known}); "
                       "create it with `hpo study create` or check --storage/--study")
    probe = optuna.load_study(study_name=name, storage=storage)
    raw = probe.user_attrs.get(CONFIG_ATTR)
    if raw is None:
        raise HpoError(f"study {name!r} was not created by hpo (no {CONFIG_ATTR}); create one "
                       "with `hpo study create`")
    config = StudyConfig.from_json(raw)
    study = optuna.load_study(study_name=name, storage=storage,
                              sampler=config.make_sampler(sampler_seed),
                              pruner=config.make_pruner())
    return LoadedStudy(study, config, storage_url)


def study_deadline(loaded: LoadedStudy) -> float | None:
    """Wall-clock time (epoch seconds) after which no worker starts a trial, or None."""
    if loaded.config.time_limit is None:
        return None
    created = float(loaded.study.user_attrs.get(CREATED_ATTR, time.time()))
    return created + loaded.config.time_limit


ENQUEUE_KEYS = {"lr": float, "freeze_depth": int, "aug_strength": float, "image_size": int}


def enqueue(storage_url: str, name: str, values: dict[str, str]) -> int:
    """Queue a configuration, checked against the study's space; returns its trial number.

    Optuna hands a WAITING trial to exactly one worker (a row lock on databases, the file
    lock on the journal), so it runs once however many workers start together.
    """
    loaded = load_study(storage_url, name)
    unknown = sorted(set(values) - set(ENQUEUE_KEYS))
    if unknown:
        raise HpoError(f"unknown parameter {unknown[0]!r}; use {', '.join(ENQUEUE_KEYS)}")
    params: dict[str, float | int] = {}
    for key, text in values.items():
        try:
            params[key] = ENQUEUE_KEYS[key](text)
        except ValueError as e:
            raise HpoError(f"{key}={text!r} is not a valid {ENQUEUE_KEYS[key].__name__}") from e
    bounds = loaded.config.bounds(load_dataset(loaded.config.data))
    ranges = {"lr": bounds.lr, "freeze_depth": bounds.freeze_depth,
              "aug_strength": bounds.aug_strength}
    for key, (lo, hi) in ranges.items():
        if key in params and not lo <= params[key] <= hi:
            raise HpoError(f"{key}={params[key]} is outside the study's range {lo}..{hi}")
    if "image_size" in params and params["image_size"] not in bounds.image_sizes:
        raise HpoError(f"image_size={params['image_size']} is not one of the study's sizes "
                       f"{', '.join(map(str, bounds.image_sizes))}")
    loaded.study.enqueue_trial(params, user_attrs={"hpo.origin": "enqueued"})
    return loaded.study.get_trials(deepcopy=False)[-1].number


def create_or_resume(storage_url: str, name: str, config: StudyConfig,
                     artifacts: str | None = None, allow_data_issues: bool = False
                     ) -> tuple[LoadedStudy, bool]:
    """``hpo run``: create the study, or resume it if it exists with the same settings."""
    path = parse_storage(storage_url).path
    if path is not None and not path.exists():  # validate before the file is created
        return create_study(storage_url, name, config, artifacts, allow_data_issues), True
    storage = open_storage(storage_url)
    if name not in study_names(storage):
        return create_study(storage_url, name, config, artifacts, allow_data_issues), True
    loaded = load_study(storage_url, name, storage=storage)
    if artifacts and resolve_artifacts(storage_url, artifacts) != loaded.config.artifacts:
        raise HpoError(f"study {name!r} keeps its checkpoints in {loaded.config.artifacts}, not "
                       f"{artifacts}; drop --artifacts to resume it (or set HPO_ARTIFACTS to "
                       "where that folder is mounted on this machine)")
    new, _, _ = prepare_config(config, storage_url, artifacts or os.environ.get(ENV_ARTIFACTS)
                               or loaded.config.artifacts,
                               allow_data_issues=True)  # checked when it was created
    diffs = [f for f in IDENTITY_FIELDS if getattr(new, f) != getattr(loaded.config, f)]
    if diffs:
        shown = "; ".join(_difference(f, getattr(loaded.config, f), getattr(new, f))
                          for f in diffs[:3])
        raise HpoError(f"study {name!r} already exists with other settings ({shown}); pass "
                       "--study with a new name, or the same settings to resume")
    if new.trials != loaded.config.trials:
        loaded.study.set_user_attr(CONFIG_ATTR, loaded.config.with_updates(
            trials=new.trials).to_json())
        loaded = load_study(storage_url, name, storage=storage)
    return loaded, False


def _difference(field: str, stored: Any, given: Any) -> str:
    """``space: lr 1e-05..0.003 vs 1e-05..0.01`` rather than two dataclass reprs."""
    if isinstance(stored, SearchSpace) and isinstance(given, SearchSpace):
        a, b = stored.to_dict(), given.to_dict()
        return ", ".join(f"{field} {k} {_span(k, a[k])} vs {_span(k, b[k])}" for k in a
                         if a[k] != b[k])
    return f"{field}: {stored!r} vs {given!r}"


def _span(key: str, v: Any) -> str:
    if v is None or (key == "image_sizes" and not v):
        return "default"
    if key == "image_sizes":
        return ",".join(map(str, v))
    if isinstance(v, (list, tuple)):
        return f"{v[0]}..{v[1]}"
    return str(v)
