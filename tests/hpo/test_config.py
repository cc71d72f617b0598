from __future__ import annotations

import pytest

from hpo.config import StudyConfig
from hpo.errors import HpoError
from hpo.space import SearchSpace
from trainers import TrainerError


def test_json_round_trip() -> None:
    cfg = StudyConfig(data="/d/breastmnist.npz", model="test_resnet", weights="none",
                      space=SearchSpace(lr=(1e-4, 1e-2), freeze_depth=(0, 3),
                                        image_sizes=(28, 64)))
    assert StudyConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize("changes, message", [
    ({"epochs": 0}, "epochs must be at least 1"),
    ({"metric": "f1"}, "metric must be one of accuracy, balanced_accuracy, auroc"),
    ({"pruner": "asha"}, "pruner must be one of"),
    ({"weights": "/no/such.safetensors"}, "weights file /no/such.safetensors does not exist"),
])
def test_bad_settings_are_named(changes: dict, message: str) -> None:
    cfg = StudyConfig(data="x", model="test_resnet", weights="none").with_updates(**changes)
    with pytest.raises(HpoError, match=message):
        cfg.check()


def test_unknown_model() -> None:
    with pytest.raises(TrainerError, match="unknown timm model"):
        StudyConfig(data="x", model="no_such_net").check()


def test_space_checks_depth_against_the_model() -> None:
    with pytest.raises(HpoError, match="freeze_depth must be between 0 and 5 for test_resnet, "
                                       "but got 7"):
        SearchSpace(freeze_depth=(0, 7)).check("test_resnet", 5)
    with pytest.raises(HpoError, match="aug_strength range"):
        SearchSpace(aug_strength=(0.5, 1.5)).check("m", 5)


def test_newer_config_version_is_refused() -> None:
    text = StudyConfig(data="x", model="m").to_json().replace('"version": 1', '"version": 99')
    with pytest.raises(HpoError, match="newer hpo"):
        StudyConfig.from_json(text)
