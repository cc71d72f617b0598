from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainers import AugmentPolicy, TrainerError, augment_batch, load_npz


def _batch() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(16, 1, 28, 28, generator=g)


def test_strength_zero_is_exactly_identity() -> None:
    x = _batch()
    out = augment_batch(x, 0.0)
    assert torch.equal(out, x)


def test_change_grows_with_strength(breast_npz: Path) -> None:
    x = load_npz(breast_npz).train.images[:64].float() / 255  # real images: smooth, not noise
    diffs = []
    for s in (0.1, 0.4, 0.7, 1.0):
        out = augment_batch(x, s, generator=torch.Generator().manual_seed(1))
        assert out.shape == x.shape and out.dtype == x.dtype
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        diffs.append(float((out - x).abs().mean()))
    assert diffs == sorted(diffs) and diffs[0] > 0 and diffs[-1] > 3 * diffs[0]


def test_same_generator_seed_is_reproducible() -> None:
    x = _batch()
    a = augment_batch(x, 0.6, generator=torch.Generator().manual_seed(5))
    b = augment_batch(x, 0.6, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_policy_without_flips_never_mirrors() -> None:
    # A left-right ramp: a horizontal flip would reverse its gradient.
    ramp = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(64, 1, 32, 32).contiguous()
    out = augment_batch(ramp, 0.3, AugmentPolicy(hflip=False, vflip=False),
                        generator=torch.Generator().manual_seed(0))
    slope = (out[..., -4:].mean(dim=(1, 2, 3)) - out[..., :4].mean(dim=(1, 2, 3)))
    assert bool((slope > 0).all())
    flipped = augment_batch(ramp, 1.0, AugmentPolicy(hflip=True),
                            generator=torch.Generator().manual_seed(0))
    slope = (flipped[..., -4:].mean(dim=(1, 2, 3)) - flipped[..., :4].mean(dim=(1, 2, 3)))
    assert bool((slope < 0).any())


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_out_of_range_strength_is_refused(bad: float) -> None:
    with pytest.raises(TrainerError, match="aug_strength must be between 0 and 1"):
        augment_batch(_batch(), bad)
