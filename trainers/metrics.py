"""Classification metrics from predicted probabilities, without extra dependencies."""

from __future__ import annotations

import math

import torch

METRICS = ("accuracy", "balanced_accuracy", "auroc")


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    return float((probs.argmax(dim=1) == labels).float().mean())


def balanced_accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean per-class recall over the classes present in ``labels``."""
    pred = probs.argmax(dim=1)
    recalls = [float((pred[labels == c] == c).float().mean()) for c in torch.unique(labels)]
    return sum(recalls) / len(recalls)


def _binary_auc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """Mann-Whitney U statistic with average ranks for ties."""
    n_pos = int(positive.sum())
    n_neg = int(positive.numel()) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    scores = scores.double()
    order = torch.argsort(scores)
    sorted_scores = scores[order]
    ranks = torch.empty_like(scores)
    # average ranks over runs of equal scores
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True,
                                                  return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    avg = ends - (counts.double() - 1) / 2
    ranks[order] = avg[inverse]
    rank_sum = float(ranks[positive.bool()].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def auroc(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Binary ROC AUC, or macro one-vs-rest AUC over the classes present (MedMNIST's way)."""
    if probs.shape[1] == 2:
        return _binary_auc(probs[:, 1], labels == 1)
    aucs = [_binary_auc(probs[:, c], labels == c) for c in range(probs.shape[1])]
    valid = [a for a in aucs if not math.isnan(a)]
    return sum(valid) / len(valid) if valid else math.nan


def compute_metrics(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    probs, labels = probs.float().cpu(), labels.cpu()
    return {
        "accuracy": accuracy(probs, labels),
        "balanced_accuracy": balanced_accuracy(probs, labels),
        "auroc": auroc(probs, labels),
    }
