"""Fine-tuning of pretrained timm classifiers on small image datasets (no Optuna here)."""

from trainers.augment import AugmentPolicy, augment_batch
from trainers.compute import COMPUTE_CHOICES, ComputeMode, choose_mode
from trainers.data import Dataset, Split, load_dataset, load_image_folder, load_npz, resolve_data
from trainers.errors import NonFiniteLossError, TrainerError
from trainers.finetune import (
    FinetuneResult,
    Hyperparams,
    Report,
    TrainSpec,
    evaluate,
    fine_tune,
    predict_probs,
    resolve_device,
)
from trainers.metrics import METRICS, compute_metrics
from trainers.model import ModelInfo, build_model, count_stages, freeze_stages
from trainers.preprocess import Preprocess

__all__ = [
    "COMPUTE_CHOICES",
    "ComputeMode",
    "choose_mode",
    "METRICS",
    "AugmentPolicy",
    "Dataset",
    "FinetuneResult",
    "Hyperparams",
    "ModelInfo",
    "NonFiniteLossError",
    "Preprocess",
    "Report",
    "Split",
    "TrainSpec",
    "TrainerError",
    "augment_batch",
    "build_model",
    "compute_metrics",
    "count_stages",
    "evaluate",
    "fine_tune",
    "freeze_stages",
    "load_dataset",
    "load_image_folder",
    "load_npz",
    "predict_probs",
    "resolve_data",
    "resolve_device",
]
