from __future__ import annotations

from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
import torch.nn.functional as F
from timm.layers import FrozenBatchNormAct2d
from torchvision.ops.misc import FrozenBatchNorm2d

from trainers import TrainerError, build_model, freeze_stages
from trainers.model import find_local_weights, parameter_stages, trainable_parameter_names

TINY = ["test_resnet", "test_efficientnet"]


def _step(model: torch.nn.Module, size: int = 32) -> None:
    model.train()
    x = torch.randn(4, 3, size, size)
    loss = F.cross_entropy(model(x), torch.tensor([0, 1, 0, 1]))
    loss.backward()


@pytest.mark.parametrize("name", TINY)
def test_gradients_reach_exactly_the_unfrozen_parameters(name: str) -> None:
    probe, info = build_model(name, 2, weights="none")
    stages = parameter_stages(probe)
    for depth in range(info.stages + 1):
        torch.manual_seed(0)
        model, _ = build_model(name, 2, weights="none")
        frozen = set(freeze_stages(model, depth, name))
        assert frozen == {p for p, s in stages.items() if s < depth}
        _step(model)
        for pname, p in model.named_parameters():
            # (zero-initialised residual BNs can make a reached gradient exactly 0 at init)
            assert (p.grad is not None) == (pname not in frozen), (depth, pname)
            if p.grad is not None:
                assert torch.isfinite(p.grad).all()
    # at the maximum depth only the head is left
    model, _ = build_model(name, 2, weights="none")
    freeze_stages(model, info.stages, name)
    head = model.get_classifier()
    assert all(p.requires_grad for p in head.parameters())


@pytest.mark.parametrize("name", TINY)
def test_frozen_batchnorm_statistics_stay_put(name: str) -> None:
    model, info = build_model(name, 2, weights="none")
    depth = 2
    stage_of = parameter_stages(model)  # before freezing: frozen BN weights become buffers
    freeze_stages(model, depth, name)
    before = {k: v.clone() for k, v in model.state_dict().items() if "running_mean" in k}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        _step(model)
        opt.step()
    after = model.state_dict()
    frozen_stats = [k for k in before if stage_of.get(k.replace("running_mean", "weight"), 99)
                    < depth]
    live_stats = [k for k in before if k not in frozen_stats]
    assert frozen_stats and live_stats
    assert all(torch.equal(before[k], after[k]) for k in frozen_stats)
    assert any(not torch.equal(before[k], after[k]) for k in live_stats)
    assert any(isinstance(m, (FrozenBatchNorm2d, FrozenBatchNormAct2d)) for m in model.modules())


def test_out_of_range_freeze_depth_names_the_range() -> None:
    model, info = build_model("test_resnet", 2, weights="none")
    with pytest.raises(TrainerError,
                       match=r"freeze_depth must be between 0 and 5 for test_resnet, but got 7"):
        freeze_stages(model, 7, "test_resnet")


def test_local_weights_load_and_head_is_reinitialised(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = timm.create_model("test_resnet", num_classes=10)
    path = tmp_path / "test_resnet.safetensors"
    safetensors.torch.save_file(source.state_dict(), str(path))
    model, info = build_model("test_resnet", 3, weights=str(path))
    assert info.weights == str(path)
    src = source.state_dict()
    got = model.state_dict()
    backbone = [k for k in src if not k.startswith("fc.")]
    assert all(torch.equal(src[k], got[k]) for k in backbone)
    assert got["fc.weight"].shape == (3, src["fc.weight"].shape[1])
    assert float(got["fc.weight"].std()) < 0.05 and torch.count_nonzero(got["fc.bias"]) == 0
    out = model.eval()(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 3) and torch.isfinite(out).all()


def test_real_pretrained_weights_from_the_weights_dir(weights_dir: Path) -> None:
    found = find_local_weights("mobilenetv2_100", weights_dir)
    assert found == weights_dir / "mobilenetv2_100.in1k.safetensors"
    model, info = build_model("mobilenetv2_100", 2, weights_dir=weights_dir)
    file_sd = safetensors.torch.load_file(str(found))
    assert torch.equal(model.state_dict()["conv_stem.weight"], file_sd["conv_stem.weight"])
    assert info.stages == 5 and info.mean == (0.485, 0.456, 0.406)
    assert trainable_parameter_names(model)  # nothing frozen by default


def test_wrong_weights_file_is_a_clear_error(weights_dir: Path) -> None:
    with pytest.raises(TrainerError, match="does not fit model test_resnet"):
        build_model("test_resnet", 2,
                    weights=str(weights_dir / "mobilenetv2_100.in1k.safetensors"))


def test_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(TrainerError, match="unknown timm model 'resnet_nope'"):
        build_model("resnet_nope", 2, weights="none")


def test_hub_failure_offline_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match="pass --weights FILE"):
        build_model("test_resnet", 2, weights_dir=tmp_path)  # empty dir: falls back to the hub
