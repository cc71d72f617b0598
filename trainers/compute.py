"""How a training step computes: memory format and mixed precision, chosen where they win.

On CUDA, channels-last with bf16 autocast (fp16 with a gradient scaler on GPUs without bf16),
the usual fast path for these CNNs on tensor-core GPUs. On CPU it depends on the model, the
image size and the CPU: measured on 2-core Sapphire Rapids (AMX) and AMD EPYC (AVX-512 bf16)
machines (``benchmarks/compute_modes.py``), channels-last makes depthwise models (MobileNetV2,
EfficientNet-Lite) 1.3-2.5x faster and ResNet-18 about as fast or slightly slower, while bf16
makes ResNet-18 at 64-128 px 1.4-2.2x faster and small depthwise models slower. So on CPU
``auto`` measures: a few steps of each candidate on a copy of the model, once per model, image
size and batch size in a process, and keeps the fastest (fp32 NCHW unless another is clearly
faster, since it is what every other tool computes).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainers.errors import TrainerError

log = logging.getLogger(__name__)

COMPUTE_CHOICES = ("auto", "fp32", "channels_last", "amp", "amp+channels_last")
MIN_GAIN = 1.10  # another mode must be this much faster than fp32 NCHW to be chosen
PROBE_STEPS = 2  # timed steps per candidate, after one warm-up step


@dataclass(frozen=True)
class ComputeMode:
    """``amp_dtype`` None means fp32; ``channels_last`` applies to the model and every batch."""

    channels_last: bool = False
    amp_dtype: torch.dtype | None = None

    @property
    def name(self) -> str:
        precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]
        return precision + ("+channels_last" if self.channels_last else "")

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.amp_dtype)

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def apply(self, model: nn.Module) -> nn.Module:
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def for_eval(self, device: torch.device) -> ComputeMode:
        """Validation on CPU stays fp32 (it is cheap there), so the metrics a trial records are
        the ones its exported model reproduces in ``hpo export`` and ``hpo predict``."""
        return self if device.type == "cuda" else ComputeMode(self.channels_last, None)

    def scaler(self, device: torch.device) -> torch.amp.GradScaler | None:
        """fp16 needs loss scaling; bf16 and fp32 do not."""
        return torch.amp.GradScaler(device.type) if self.amp_dtype == torch.float16 else None


FP32 = ComputeMode()


def amp_dtype_for(device: torch.device) -> torch.dtype:
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


def cpu_has_fast_bf16() -> bool:
    """bf16 on a CPU without native support is emulated and slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def fixed_mode(choice: str, device: torch.device) -> ComputeMode | None:
    """The mode ``choice`` names, or None for ``auto`` on CPU (which has to measure)."""
    if choice not in COMPUTE_CHOICES:
        raise TrainerError(f"compute must be one of {', '.join(COMPUTE_CHOICES)}, "
                           f"but got {choice!r}")
    if choice == "auto":
        if device.type == "cuda":
            return ComputeMode(True, amp_dtype_for(device))
        return None
    amp = amp_dtype_for(device) if choice.startswith("amp") else None
    return ComputeMode(choice.endswith("channels_last"), amp)


def candidates(device: torch.device) -> list[ComputeMode]:
    modes = [FP32, ComputeMode(channels_last=True)]
    if device.type == "cpu" and cpu_has_fast_bf16():
        modes += [ComputeMode(False, torch.bfloat16), ComputeMode(True, torch.bfloat16)]
    return modes


_chosen: dict[tuple[str, int, int, int, str], ComputeMode] = {}


def choose_mode(choice: str, model: nn.Module, key: str, image_size: int, batch_size: int,
                device: torch.device, in_chans: int = 3,
                clock: Callable[[], float] = time.perf_counter) -> ComputeMode:
    """Resolve ``choice`` for this model; ``auto`` on CPU measures once per (model, size, batch)
    in this process. ``key`` names the model (its timm name)."""
    mode = fixed_mode(choice, device)
    if mode is not None:
        return mode
    cache_key = (key, image_size, batch_size, torch.get_num_threads(), str(device))
    if cache_key not in _chosen:
        rates = {m: _probe(model, m, in_chans, image_size, batch_size, device, clock)
                 for m in candidates(device)}
        best = max(rates, key=lambda m: rates[m])
        _chosen[cache_key] = best if rates[best] >= MIN_GAIN * rates[FP32] else FP32
        log.info("compute mode for %s at %d px: %s (%s)", key, image_size,
                 _chosen[cache_key].name,
                 ", ".join(f"{m.name} {r:.0f} img/s" for m, r in rates.items()))
    return _chosen[cache_key]


def _probe(model: nn.Module, mode: ComputeMode, in_chans: int, image_size: int,
           batch_size: int, device: torch.device, clock: Callable[[], float]) -> float:
    """Images/s of forward+backward on a throw-away copy (the trial's model, its frozen stages
    and BatchNorm statistics are untouched)."""
    trial_copy = mode.apply(copy.deepcopy(model).to(device).train())
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = mode.batch(torch.randn(batch_size, in_chans, image_size, image_size, generator=gen)
                   .to(device))
    y = torch.zeros(batch_size, dtype=torch.long, device=device)
    best = float("inf")
    for step in range(1 + PROBE_STEPS):
        start = clock()
        with mode.autocast(device):
            loss = F.cross_entropy(trial_copy(x).float(), y)
        if loss.requires_grad:
            loss.backward()
        trial_copy.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step > 0:
            best = min(best, clock() - start)
    del trial_copy
    return batch_size / max(best, 1e-9)
