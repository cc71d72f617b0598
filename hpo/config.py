"""StudyConfig: everything a worker needs, validated once and stored inside the study."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna

from hpo.errors import HpoError
from hpo.space import SearchSpace, SpaceBounds, resolve
from trainers import METRICS, AugmentPolicy, Dataset, TrainSpec, build_model, count_stages
from trainers.compute import COMPUTE_CHOICES
from trainers.model import RANDOM_INIT, check_model_name

CONFIG_ATTR = "hpo.config"
CONFIG_VERSION = 1
PRUNERS = ("hyperband", "median", "sha", "none")
SAMPLERS = ("tpe", "random")


@dataclass(frozen=True)
class StudyConfig:
    """A study's fixed settings (data, model, budget, pruner) and its search space."""

    data: str
    model: str
    weights: str | None = None  # file, "none" (random init) or None (weights dir, then hub)
    epochs: int = 10
    batch_size: int = 32
    trials: int = 30
    metric: str = "accuracy"
    pruner: str = "hyperband"
    sampler: str = "tpe"
    seed: int = 0
    hflip: bool = True
    vflip: bool = False
    artifacts: str = ""
    heartbeat_interval: int = 20  # seconds between a running trial's heartbeats (databases)
    grace_period: int = 60  # a trial silent this long is failed and retried
    max_retries: int = 1  # retries of a trial whose worker died or was preempted
    time_limit: float | None = None  # seconds from study creation; no new trials after it
    keep_checkpoints: int = 3  # checkpoint files of the K best trials are kept
    compute: str = "auto"  # memory format and precision (trainers.compute)
    space: SearchSpace = field(default_factory=SearchSpace)
    version: int = CONFIG_VERSION

    # ------------------------------------------------------------------ checks

    def check(self) -> None:
        """Check everything that does not need the data or the model's weights."""
        if self.epochs < 1:
            raise HpoError(f"epochs must be at least 1, but got {self.epochs}")
        if self.trials < 1:
            raise HpoError(f"trials must be at least 1, but got {self.trials}")
        if self.batch_size < 2:
            raise HpoError(f"batch size must be at least 2, but got {self.batch_size}")
        if self.metric not in METRICS:
            raise HpoError(f"metric must be one of {', '.join(METRICS)}, but got {self.metric!r}")
        if self.pruner not in PRUNERS:
            raise HpoError(f"pruner must be one of {', '.join(PRUNERS)}, but got "
                           f"{self.pruner!r}")
        if self.heartbeat_interval < 1:
            raise HpoError(f"heartbeat interval must be at least 1 s, but got "
                           f"{self.heartbeat_interval}")
        if self.grace_period <= self.heartbeat_interval:
            raise HpoError(f"grace period ({self.grace_period} s) must be longer than the "
                           f"heartbeat interval ({self.heartbeat_interval} s); use at least 3x")
        if self.keep_checkpoints < 1:
            raise HpoError(f"keep checkpoints must be at least 1 (the best trial's), but got "
                           f"{self.keep_checkpoints}")
        if self.max_retries < 0:
            raise HpoError(f"max retries must be >= 0, but got {self.max_retries}")
        if self.time_limit is not None and self.time_limit <= 0:
            raise HpoError(f"time limit must be positive, but got {self.time_limit}")
        if self.compute not in COMPUTE_CHOICES:
            raise HpoError(f"compute must be one of {', '.join(COMPUTE_CHOICES)}, but got "
                           f"{self.compute!r}")
        if self.sampler not in SAMPLERS:
            raise HpoError(f"sampler must be one of {', '.join(SAMPLERS)}, but got "
                           f"{self.sampler!r}")
        if self.weights not in (None, RANDOM_INIT):
            if Path(self.weights).is_dir():
                raise HpoError(f"--weights {self.weights} is a folder; pass a weights file, or "
                               "set HPO_WEIGHTS_DIR to the folder to look up files by model name")
            if not Path(self.weights).is_file():
                raise HpoError(f"weights file {self.weights} does not exist; pass an existing "
                               ".safetensors/.pth file, or --weights none for random init")
        check_model_name(self.model)

    def model_stages(self) -> int:
        import timm

        return count_stages(timm.create_model(self.model, pretrained=False, num_classes=2))

    def check_against(self, dataset: Dataset) -> tuple[SpaceBounds, str]:
        """Build the model with its weights once, as every trial will (file, weights dir or
        hub), so a bad file or an offline hub is reported before the study exists; then check
        the search space against its stages and the data. Returns the bounds and where the
        weights came from."""
        _, info = build_model(self.model, dataset.num_classes, self.weights)
        self.space.check(self.model, info.stages)
        if len(dataset.train) < self.batch_size:
            raise HpoError(f"batch size {self.batch_size} is larger than the training split "
                           f"({len(dataset.train)} images); pass a smaller --batch-size")
        return self.bounds(dataset, info.stages), info.weights

    def bounds(self, dataset: Dataset, stages: int | None = None) -> SpaceBounds:
        stages = self.model_stages() if stages is None else stages
        return resolve(self.space, stages, max(dataset.image_size))

    # ------------------------------------------------------------------ derived objects

    def train_spec(self, seed: int) -> TrainSpec:
        return TrainSpec(model=self.model, epochs=self.epochs, batch_size=self.batch_size,
                         metric=self.metric, weights=self.weights,
                         policy=AugmentPolicy(hflip=self.hflip, vflip=self.vflip), seed=seed,
                         compute=self.compute)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        if self.pruner == "hyperband":
            return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=self.epochs,
                                                  reduction_factor=3)
        if self.pruner == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=5,
                                               n_warmup_steps=min(2, self.epochs - 1))
        if self.pruner == "sha":
            return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
        return optuna.pruners.NopPruner()

    def make_sampler(self, seed: int | None) -> optuna.samplers.BaseSampler:
        """``seed`` differs per worker process, or parallel workers would propose alike."""
        if self.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                          n_startup_trials=min(8, max(2, self.trials // 4)))

    # ------------------------------------------------------------------ JSON

    def to_json(self) -> str:
        d = asdict(self)
        d["space"] = self.space.to_dict()
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StudyConfig:
        d: dict[str, Any] = json.loads(text)
        if d.get("version", 0) > CONFIG_VERSION:
            raise HpoError(f"this study was created by a newer hpo (config version "
                           f"{d['version']}); upgrade hpo on this machine")
        d["space"] = SearchSpace.from_dict(d["space"])
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})

    def with_updates(self, **changes: Any) -> StudyConfig:
        return replace(self, **changes)
