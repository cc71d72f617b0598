"""The search space a study declares and how a trial samples it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna

from hpo.errors import HpoError
from trainers import Hyperparams


@dataclass(frozen=True)
class SearchSpace:
    """Ranges to search. ``freeze_depth=None`` means the model's whole range (0..stages);
    empty ``image_sizes`` means the data's native size."""

    lr: tuple[float, float] = (1e-5, 3e-3)
    freeze_depth: tuple[int, int] | None = None
    aug_strength: tuple[float, float] = (0.0, 1.0)
    image_sizes: tuple[int, ...] = ()
    weight_decay: float = 0.05

    def check(self, model: str, stages: int) -> None:
        lo, hi = self.lr
        if lo > hi:
            raise HpoError(f"lr range {lo}..{hi} is reversed; use LOW..HIGH")
        if not (0 < lo <= hi < 10 and math.isfinite(hi)):
            raise HpoError(f"lr range must satisfy 0 < low <= high < 10, but got {lo}..{hi}")
        if self.freeze_depth is not None:
            flo, fhi = self.freeze_depth
            for d in (flo, fhi):
                if not 0 <= d <= stages:
                    raise HpoError(f"freeze_depth must be between 0 and {stages} for {model}, "
                                   f"but got {d}")
            if flo > fhi:
                raise HpoError(f"freeze_depth range {flo}..{fhi} is empty; use LOW..HIGH")
        alo, ahi = self.aug_strength
        if alo > ahi:
            raise HpoError(f"aug_strength range {alo}..{ahi} is reversed; use LOW..HIGH")
        if not 0 <= alo <= ahi <= 1:
            raise HpoError(f"aug_strength range must be within 0..1, but got {alo}..{ahi}")
        for s in self.image_sizes:
            if not 8 <= s <= 1024:
                raise HpoError(f"image size must be between 8 and 1024, but got {s}")
        if self.weight_decay < 0:
            raise HpoError(f"weight_decay must be >= 0, but got {self.weight_decay}")

    def depth_range(self, stages: int) -> tuple[int, int]:
        return self.freeze_depth if self.freeze_depth is not None else (0, stages)

    def sizes(self, native: int) -> tuple[int, ...]:
        return self.image_sizes or (native,)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchSpace:
        fd = d.get("freeze_depth")
        return cls(lr=tuple(d["lr"]), freeze_depth=tuple(fd) if fd is not None else None,
                   aug_strength=tuple(d["aug_strength"]),
                   image_sizes=tuple(d.get("image_sizes", ())),
                   weight_decay=float(d.get("weight_decay", 0.05)))


@dataclass(frozen=True)
class SpaceBounds:
    """The space resolved against a model and a dataset (what a trial actually samples)."""

    lr: tuple[float, float]
    freeze_depth: tuple[int, int]
    aug_strength: tuple[float, float]
    image_sizes: tuple[int, ...]
    weight_decay: float = 0.05
    extra: dict[str, Any] = field(default_factory=dict)


def resolve(space: SearchSpace, stages: int, native_size: int) -> SpaceBounds:
    return SpaceBounds(lr=space.lr, freeze_depth=space.depth_range(stages),
                       aug_strength=space.aug_strength, image_sizes=space.sizes(native_size),
                       weight_decay=space.weight_decay)


def sample(trial: optuna.Trial, bounds: SpaceBounds) -> Hyperparams:
    """Sample one configuration; every searched name is an Optuna param (visible in dashboards)."""
    lr = trial.suggest_float("lr", bounds.lr[0], bounds.lr[1], log=True)
    depth = trial.suggest_int("freeze_depth", *bounds.freeze_depth)
    aug = trial.suggest_float("aug_strength", *bounds.aug_strength)
    size = int(trial.suggest_categorical("image_size", list(bounds.image_sizes)))
    return Hyperparams(lr=lr, freeze_depth=depth, aug_strength=aug, image_size=size,
                       weight_decay=bounds.weight_decay)


def default_params(bounds: SpaceBounds) -> dict[str, Any]:
    """A sensible first configuration to enqueue: a common fine-tuning recipe, clipped to the
    space (lr 1e-3 with AdamW, full fine-tune, mild augmentation, the largest image size)."""
    lr = min(max(1e-3, bounds.lr[0]), bounds.lr[1])
    return {"lr": lr, "freeze_depth": bounds.freeze_depth[0],
            "aug_strength": min(max(0.3, bounds.aug_strength[0]), bounds.aug_strength[1]),
            "image_size": max(bounds.image_sizes)}
