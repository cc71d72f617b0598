"""Fine-tune one configuration: the loop that a trial runs.

The loop reads like timm's outer loop but is callable: ``train_one_epoch`` and ``evaluate`` return
metric dicts, and ``fine_tune`` validates after every epoch, hands the metrics to a ``report``
callback (which may stop the run: that is how pruning reaches in without this package knowing
Optuna), and keeps the best epoch's weights.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainers.augment import AugmentPolicy, augment_batch, check_strength
from trainers.compute import COMPUTE_CHOICES, FP32, ComputeMode, choose_mode, fixed_mode
from trainers.data import Dataset, Split
from trainers.errors import NonFiniteLossError, TrainerError
from trainers.metrics import METRICS, compute_metrics
from trainers.model import ModelInfo, build_model, freeze_stages, model_state
from trainers.preprocess import Preprocess

log = logging.getLogger(__name__)

Report = Callable[[int, dict[str, float]], bool]
"""``report(epoch, metrics) -> stop``: called after each validation; True stops the run."""

NAN_CHECK_EVERY = 8  # steps between loss checks (each check syncs the device)
EVAL_BATCH = 256


@dataclass(frozen=True)
class Hyperparams:
    """What a trial chooses. Ranges are the study's business; this only checks sanity."""

    lr: float
    freeze_depth: int = 0
    aug_strength: float = 0.0
    image_size: int = 28
    weight_decay: float = 0.05
    label_smoothing: float = 0.1

    def check(self) -> None:
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise TrainerError(f"lr must be a positive number, but got {self.lr}")
        check_strength(self.aug_strength)
        if not 8 <= self.image_size <= 1024:
            raise TrainerError(f"image_size must be between 8 and 1024, but got {self.image_size}")
        if self.weight_decay < 0:
            raise TrainerError(f"weight_decay must be >= 0, but got {self.weight_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise TrainerError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainSpec:
    """What the study fixes for every trial."""

    model: str
    epochs: int
    batch_size: int = 64
    metric: str = "accuracy"
    weights: str | None = None
    weights_dir: str | None = None
    policy: AugmentPolicy = AugmentPolicy()
    seed: int = 0
    warmup_fraction: float = 0.1
    compute: str = "auto"

    def check(self) -> None:
        if self.epochs < 1:
            raise TrainerError(f"epochs must be at least 1, but got {self.epochs}")
        if self.batch_size < 2:
            raise TrainerError(f"batch_size must be at least 2, but got {self.batch_size}")
        if self.compute not in COMPUTE_CHOICES:
            raise TrainerError(f"compute must be one of {', '.join(COMPUTE_CHOICES)}, "
                               f"but got {self.compute!r}")
        if self.metric not in METRICS:
            raise TrainerError(f"metric must be one of {', '.join(METRICS)}, "
                               f"but got {self.metric!r}")


@dataclass
class FinetuneResult:
    """The outcome of one run; ``state`` holds the best epoch's weights (CPU tensors)."""

    model_info: ModelInfo
    hparams: Hyperparams
    best_epoch: int
    best_metrics: dict[str, float]
    history: list[dict[str, float]]
    stopped_early: bool
    images_per_s: float
    state: dict[str, torch.Tensor] = field(repr=False)
    compute: str = "fp32"
    """The compute mode the run used (``trainers.compute``), to re-run it the same way."""

    @property
    def epochs_run(self) -> int:
        return len(self.history)


# --------------------------------------------------------------------------- device helpers


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise TrainerError(f"--device {str(device)!r} is not a device; use auto, cpu, cuda or "
                           "cuda:N") from e
    if dev.type not in ("cpu", "cuda"):
        raise TrainerError(f"--device {str(device)!r} is not supported; use auto, cpu, cuda or "
                           "cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainerError("device cuda requested but no CUDA GPU is visible; use --device cpu "
                           "or check CUDA_VISIBLE_DEVICES")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise TrainerError(f"--device {dev} asked for GPU {dev.index} but "
                           f"{torch.cuda.device_count()} are visible; use cuda:0.."
                           f"cuda:{torch.cuda.device_count() - 1} or check CUDA_VISIBLE_DEVICES")
    return dev


CACHE_SHARE_OF_FREE = 0.25  # of free device memory; the rest is for the model, activations
# and the other trials sharing the GPU (--workers-per-gpu)


def cache_fits(nbytes: int, free_bytes: int, share: float) -> bool:
    """Whether an image cache of ``nbytes`` may use ``share`` of ``free_bytes`` free."""
    return nbytes <= share * free_bytes


def place_split(split: Split, prep: Preprocess, device: torch.device) -> Split:
    """Resize the uint8 cache once and put it on ``device`` when it fits in a quarter of the
    free device memory; otherwise (or on an out-of-memory error) keep it in pinned host memory
    and copy one batch at a time, which is slower but never starves the training step."""
    images = prep.resize(split.images)
    if device.type != "cuda":
        return Split(images, split.labels)
    nbytes = images.numel() * images.element_size()
    free, _ = torch.cuda.mem_get_info(device)
    if cache_fits(nbytes, free, CACHE_SHARE_OF_FREE):
        try:
            return Split(images.to(device), split.labels.to(device))
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
    log.warning("image cache (%.0f MB) does not fit in a quarter of the %.0f MB free on %s; "
                "streaming batches from pinned host memory", nbytes / 2**20, free / 2**20,
                device)
    return Split(images.pin_memory(), split.labels.pin_memory())


# --------------------------------------------------------------------------- loop pieces


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def _batches(n: int, batch_size: int, generator: torch.Generator | None, drop_last: bool
             ) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


def train_one_epoch(model: nn.Module, data: Split, prep: Preprocess,
                    optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, hp: Hyperparams,
                    spec: TrainSpec, epoch: int, device: torch.device,
                    generator: torch.Generator, aug_generator: torch.Generator | None,
                    mode: ComputeMode = FP32, scaler: torch.amp.GradScaler | None = None
                    ) -> dict[str, float]:
    """One pass over the training split; returns loss and images/s."""
    model.train()
    total = torch.zeros((), device=device)
    seen, start = 0, time.perf_counter()
    for step, idx in enumerate(_batches(len(data), spec.batch_size, generator, drop_last=True)):
        images = data.images[idx.to(data.images.device)].to(device, non_blocking=True)
        labels = data.labels[idx.to(data.labels.device)].to(device, non_blocking=True)
        x = augment_batch(prep.to_unit(images), hp.aug_strength, spec.policy, aug_generator)
        x = mode.batch(prep.normalize(x))
        with mode.autocast(device):
            logits = model(x)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=hp.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        total += loss.detach() * len(idx)
        seen += len(idx)
        if step % NAN_CHECK_EVERY == 0 and not torch.isfinite(loss).item():
            raise NonFiniteLossError(epoch, step, float(loss))
    mean_loss = float(total) / max(seen, 1)
    if not math.isfinite(mean_loss):
        raise NonFiniteLossError(epoch, -1, mean_loss)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    return {"train_loss": mean_loss, "images_per_s": seen / elapsed if elapsed > 0 else 0.0}


@torch.inference_mode()
def predict_probs(model: nn.Module, images: torch.Tensor, prep: Preprocess,
                  device: torch.device, batch_size: int = EVAL_BATCH,
                  mode: ComputeMode | None = None) -> torch.Tensor:
    """Class probabilities for uint8 images already at ``prep.image_size``. Without ``mode``:
    mixed precision on CUDA, plain fp32 on CPU (no measuring for a one-off prediction)."""
    model.eval()
    if mode is None:
        mode = fixed_mode("auto", device) or FP32
    outs = []
    for start in range(0, images.shape[0], batch_size):
        x = mode.batch(prep(images[start:start + batch_size].to(device, non_blocking=True)))
        with mode.autocast(device):
            logits = model(x)
        outs.append(torch.softmax(logits.float(), dim=1).cpu())
    return torch.cat(outs) if outs else torch.empty((0, 0))


def evaluate(model: nn.Module, data: Split, prep: Preprocess, device: torch.device,
             mode: ComputeMode | None = None) -> dict[str, float]:
    probs = predict_probs(model, data.images, prep, device, mode=mode)
    return compute_metrics(probs, data.labels.cpu())


def _scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup: int
               ) -> torch.optim.lr_scheduler.LRScheduler:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# --------------------------------------------------------------------------- outer loop


@dataclass
class TrainState:
    """Everything needed to continue a run after ``epoch`` (a preempted or killed trial resumes
    from here on any machine instead of starting over)."""

    epoch: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    history: list[dict[str, float]]
    best_epoch: int
    best_state: dict[str, torch.Tensor]
    train_time: float
    train_images: int

    def save(self, path: str | os.PathLike[str]) -> None:
        """Atomic write: a crash mid-save leaves the previous epoch's state intact."""
        tmp = f"{path}.part"
        torch.save(asdict(self), tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrainState:
        data = torch.load(path, map_location="cpu", weights_only=True)
        return cls(**data)


Checkpoint = Callable[[TrainState], None]
"""``checkpoint(state)``: called after each epoch's report with the state to resume from."""


def _epoch_generators(seed: int, epoch: int, device: torch.device
                      ) -> tuple[torch.Generator, torch.Generator]:
    """Per-epoch RNGs, so a resumed run draws the same batches and augmentations."""
    base = seed * 100_003 + epoch * 2
    return (torch.Generator().manual_seed(base),
            torch.Generator(device=device).manual_seed(base + 1))


def fine_tune(dataset: Dataset, spec: TrainSpec, hp: Hyperparams, device: str | torch.device,
              report: Report | None = None,
              model_and_info: tuple[nn.Module, ModelInfo] | None = None,
              checkpoint: Checkpoint | None = None,
              resume: TrainState | None = None) -> FinetuneResult:
    """Fine-tune ``spec.model`` on ``dataset`` with ``hp``; validate and report every epoch.

    With ``resume``, training continues after ``resume.epoch`` (earlier epochs are not
    reported again). The test split is never touched here. Raises ``NonFiniteLossError`` when
    the loss diverges.
    """
    spec.check()
    hp.check()
    dev = resolve_device(device)
    torch.manual_seed(spec.seed)
    if model_and_info is None:
        model, info = build_model(spec.model, dataset.num_classes, spec.weights,
                                  spec.weights_dir)
    else:
        model, info = model_and_info
    freeze_stages(model, hp.freeze_depth, spec.model)
    prep = Preprocess(hp.image_size, info.in_chans, info.mean, info.std)
    train = place_split(dataset.train, prep, dev)
    val = place_split(dataset.val, prep, dev)

    steps_per_epoch = max(1, len(train) // spec.batch_size)
    total_steps = steps_per_epoch * spec.epochs
    optimizer = torch.optim.AdamW(_param_groups(model, hp.weight_decay), lr=hp.lr)
    scheduler = _scheduler(optimizer, total_steps, max(1, int(spec.warmup_fraction * total_steps)))
    history: list[dict[str, float]] = []
    best_epoch, best_state = -1, {}
    train_time, train_images, start_epoch = 0.0, 0, 0
    if resume is not None:
        model.load_state_dict(resume.model)
        optimizer.load_state_dict(resume.optimizer)
        scheduler.load_state_dict(resume.scheduler)
        history, best_epoch, best_state = list(resume.history), resume.best_epoch, \
            resume.best_state
        train_time, train_images, start_epoch = resume.train_time, resume.train_images, \
            resume.epoch + 1
    model.to(dev)
    _move_optimizer_state(optimizer, dev)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    mode = choose_mode(spec.compute, model, spec.model, hp.image_size, spec.batch_size, dev,
                       info.in_chans)
    mode.apply(model)
    scaler = mode.scaler(dev)
    eval_mode = mode.for_eval(dev)

    stopped = False
    for epoch in range(start_epoch, spec.epochs):
        gen, aug_gen = _epoch_generators(spec.seed, epoch, dev)
        stats = train_one_epoch(model, train, prep, optimizer, scheduler, hp, spec, epoch, dev,
                                gen, aug_gen, mode, scaler)
        train_images += steps_per_epoch * spec.batch_size
        train_time += steps_per_epoch * spec.batch_size / max(stats["images_per_s"], 1e-9)
        metrics = {**evaluate(model, val, prep, dev, eval_mode), **stats, "epoch": float(epoch)}
        history.append(metrics)
        if best_epoch < 0 or metrics[spec.metric] > history[best_epoch][spec.metric]:
            best_epoch, best_state = epoch, model_state(model)
        log.debug("epoch %d: %s", epoch, metrics)
        if report is not None and report(epoch, metrics):
            stopped = epoch + 1 < spec.epochs
            break
        if checkpoint is not None and epoch + 1 < spec.epochs:
            checkpoint(TrainState(epoch, model_state(model), optimizer.state_dict(),
                                  scheduler.state_dict(), history, best_epoch, best_state,
                                  train_time, train_images))
    best = history[best_epoch]
    return FinetuneResult(
        model_info=info,
        hparams=hp,
        best_epoch=best_epoch,
        best_metrics={k: v for k, v in best.items() if k in METRICS},
        history=history,
        stopped_early=stopped,
        images_per_s=train_images / train_time if train_time > 0 else 0.0,
        state=best_state,
        compute=mode.name,
    )


def _move_optimizer_state(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    for state in optimizer.state.values():
        for k, v in state.items():
            if isinstance(v, torch.Tensor) and k != "step":
                state[k] = v.to(device)
