from __future__ import annotations

import pytest
import torch

from trainers.metrics import accuracy, auroc, balanced_accuracy, compute_metrics


def _probs(p1: list[float]) -> torch.Tensor:
    p = torch.tensor(p1)
    return torch.stack([1 - p, p], dim=1)


def test_binary_auc_known_values() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    assert auroc(_probs([0.1, 0.2, 0.8, 0.9]), labels) == 1.0
    assert auroc(_probs([0.9, 0.8, 0.2, 0.1]), labels) == 0.0
    assert auroc(_probs([0.5, 0.5, 0.5, 0.5]), labels) == 0.5
    # one positive ranked below one negative: 3 of 4 pairs right
    assert auroc(_probs([0.1, 0.6, 0.5, 0.9]), labels) == pytest.approx(0.75)


def test_multiclass_auc_is_macro_one_vs_rest() -> None:
    probs = torch.eye(3)[[0, 1, 2, 0]] * 0.8 + 0.1
    assert auroc(probs, torch.tensor([0, 1, 2, 0])) == 1.0


def test_accuracy_and_balanced_accuracy() -> None:
    labels = torch.tensor([0, 0, 0, 1])
    probs = _probs([0.1, 0.1, 0.1, 0.1])  # always predicts class 0
    assert accuracy(probs, labels) == 0.75
    assert balanced_accuracy(probs, labels) == 0.5
    assert set(compute_metrics(probs, labels)) == {"accuracy", "balanced_accuracy", "auroc"}
