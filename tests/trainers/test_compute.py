"""Compute modes: fixed choices, the measured choice on CPU, and training in each mode."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainers import TrainerError, build_model, fine_tune, load_npz
from trainers import compute as compute_mod
from trainers.compute import FP32, ComputeMode, choose_mode, fixed_mode
from trainers.data import Dataset, Split
from trainers.finetune import Hyperparams, TrainSpec

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny_breast(breast_npz: Path) -> Dataset:
    ds = load_npz(breast_npz)
    return Dataset(ds.source, ds.classes, Split(ds.train.images[:96], ds.train.labels[:96]),
                   Split(ds.val.images[:48], ds.val.labels[:48]), None)


def test_fixed_choices_name_what_they_do() -> None:
    assert fixed_mode("fp32", CPU) == FP32
    assert fixed_mode("channels_last", CPU) == ComputeMode(channels_last=True)
    assert fixed_mode("amp", CPU) == ComputeMode(False, torch.bfloat16)
    assert fixed_mode("amp+channels_last", CPU).name == "bf16+channels_last"  # type: ignore
    assert fixed_mode("auto", CPU) is None  # CPU has to measure
    with pytest.raises(TrainerError, match="compute must be one of auto, fp32"):
        fixed_mode("fast", CPU)
    assert ComputeMode(False, torch.float16).scaler(CPU) is not None  # fp16 needs scaling
    assert ComputeMode(False, torch.bfloat16).scaler(CPU) is None


def test_auto_picks_the_fastest_only_when_clearly_faster(monkeypatch: pytest.MonkeyPatch) -> None:
    model, _ = build_model("test_resnet", 2, weights="none")
    fast_cl = ComputeMode(channels_last=True)

    def run(rates: dict[ComputeMode, float], key: str) -> ComputeMode:
        calls: list[ComputeMode] = []

        def probe(_m: object, mode: ComputeMode, *args: object) -> float:
            calls.append(mode)
            return rates.get(mode, 1.0)

        monkeypatch.setattr(compute_mod, "_probe", probe)
        chosen = choose_mode("auto", model, key, 28, 16, CPU)
        again = choose_mode("auto", model, key, 28, 16, CPU)  # cached: no second measurement
        assert again == chosen and len(calls) == len(compute_mod.candidates(CPU))
        return chosen

    assert run({FP32: 100.0, fast_cl: 150.0}, "a") == fast_cl
    assert run({FP32: 100.0, fast_cl: 105.0}, "b") == FP32  # within noise: keep fp32


def test_measuring_leaves_the_trial_model_untouched() -> None:
    model, _ = build_model("test_resnet", 2, weights="none")
    for p in list(model.parameters())[:4]:
        p.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    choose_mode("auto", model, "untouched-check", 32, 8, CPU)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics included
    assert [p.requires_grad for p in model.parameters()][:4] == [False] * 4
    assert all(p.grad is None for p in model.parameters())
    assert next(model.parameters()).is_contiguous()  # still NCHW: the caller applies the mode


@pytest.mark.parametrize("choice", ["fp32", "channels_last", "amp", "amp+channels_last", "auto"])
def test_every_mode_trains_and_records_itself(tiny_breast: Dataset, choice: str) -> None:
    spec = TrainSpec("test_resnet", epochs=2, batch_size=16, weights="none", compute=choice)
    result = fine_tune(tiny_breast, spec, Hyperparams(lr=1e-3, image_size=32), "cpu")
    assert len(result.history) == 2
    assert all(torch.isfinite(v).all() for v in result.state.values())
    assert result.compute in {m.name for m in compute_mod.candidates(CPU)} | {"bf16"}
    if choice != "auto":
        assert result.compute == fixed_mode(choice, CPU).name  # type: ignore[union-attr]


def test_a_bad_choice_is_refused_before_training(tiny_breast: Dataset) -> None:
    spec = TrainSpec("test_resnet", epochs=1, batch_size=16, weights="none", compute="turbo")
    with pytest.raises(TrainerError, match="compute must be one of"):
        fine_tune(tiny_breast, spec, Hyperparams(lr=1e-3), "cpu")


def test_cpu_validation_is_fp32_so_exports_reproduce_it(tiny_breast: Dataset) -> None:
    """A bf16-trained trial's recorded val metrics equal a plain fp32 re-evaluation."""
    from trainers import evaluate
    from trainers.finetune import place_split
    from trainers.preprocess import Preprocess

    spec = TrainSpec("test_resnet", epochs=1, batch_size=16, weights="none", compute="amp")
    result = fine_tune(tiny_breast, spec, Hyperparams(lr=1e-3, image_size=32), "cpu")
    model, info = build_model("test_resnet", 2, weights="none")
    model.load_state_dict(result.state)
    prep = Preprocess(32, info.in_chans, info.mean, info.std)
    again = evaluate(model, place_split(tiny_breast.val, prep, CPU), prep, CPU)
    assert again["auroc"] == pytest.approx(result.best_metrics["auroc"], abs=1e-6)
    assert ComputeMode(True, torch.bfloat16).for_eval(CPU) == ComputeMode(channels_last=True)
