"""Errors the fine-tuning package raises for problems a user can fix."""

from __future__ import annotations


class TrainerError(Exception):
    """A bad input to fine-tuning (data, model, weights, hyperparameters); says the fix."""


class NonFiniteLossError(TrainerError):
    """The training loss became NaN or infinite; the run stops instead of wasting epochs."""

    def __init__(self, epoch: int, step: int, loss: float) -> None:
        super().__init__(
            f"training loss became {loss} at epoch {epoch}, step {step}; "
            "the learning rate is probably too high for this model"
        )
        self.epoch = epoch
        self.step = step
        self.loss = loss
