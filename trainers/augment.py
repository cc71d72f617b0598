"""Batched, device-side augmentation whose whole strength is one number in [0, 1].

One random affine per image (scale/crop, rotation, translation, optional flips) is applied to the
whole batch with a single ``grid_sample``, then brightness/contrast jitter; no per-sample Python
work and no PIL, so it runs where the batch already is (GPU or CPU). Strength 0 returns the input
unchanged, bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trainers.errors import TrainerError

# At strength 1: the crop keeps down to 60% of the area, rotations up to 20 degrees, shifts up to
# 10% of the side, brightness +-30%, contrast x0.7..1.3. Medical images tolerate mild geometry
# changes; anything stronger destroys small lesions in 28 px images.
MAX_ZOOM = 1.0 / math.sqrt(0.6) - 1.0
MAX_ROTATION_DEG = 20.0
MAX_SHIFT = 0.10
MAX_BRIGHTNESS = 0.30
MAX_CONTRAST = 0.30


@dataclass(frozen=True)
class AugmentPolicy:
    """What the data allows: flips are wrong for some modalities (e.g. laterality in X-rays)."""

    hflip: bool = True
    vflip: bool = False


def check_strength(strength: float) -> float:
    if not 0.0 <= strength <= 1.0 or math.isnan(strength):
        raise TrainerError(f"aug_strength must be between 0 and 1, but got {strength}")
    return float(strength)


def augment_batch(images: torch.Tensor, strength: float, policy: AugmentPolicy = AugmentPolicy(),
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Augment a float batch ``(B, C, H, W)`` with values in [0, 1].

    ``generator`` must live on the batch's device when given (reproducible runs).
    """
    strength = check_strength(strength)
    if strength == 0.0:
        return images
    b, device, dtype = images.shape[0], images.device, images.dtype

    def uniform(low: float, high: float) -> torch.Tensor:
        r = torch.rand(b, device=device, generator=generator, dtype=torch.float32)
        return low + (high - low) * r

    zoom = 1.0 + uniform(0.0, MAX_ZOOM * strength)  # >1 zooms in = random crop
    angle = uniform(-1.0, 1.0) * math.radians(MAX_ROTATION_DEG * strength)
    tx = uniform(-1.0, 1.0) * 2 * MAX_SHIFT * strength
    ty = uniform(-1.0, 1.0) * 2 * MAX_SHIFT * strength
    sx = torch.ones(b, device=device)
    sy = torch.ones(b, device=device)
    # Flips are applied with probability 0.5 * strength so that strength keeps meaning "how much".
    if policy.hflip:
        sx = torch.where(uniform(0, 1) < 0.5 * strength, -sx, sx)
    if policy.vflip:
        sy = torch.where(uniform(0, 1) < 0.5 * strength, -sy, sy)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([
        torch.stack([cos * sx, -sin * sy, tx], dim=1),
        torch.stack([sin * sx, cos * sy, ty], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta.to(dtype), list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection",
                        align_corners=False)
    brightness = uniform(-1.0, 1.0) * MAX_BRIGHTNESS * strength
    contrast = 1.0 + uniform(-1.0, 1.0) * MAX_CONTRAST * strength
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * contrast.view(b, 1, 1, 1).to(dtype) + mean
    out = out + brightness.view(b, 1, 1, 1).to(dtype)
    return out.clamp_(0.0, 1.0)
