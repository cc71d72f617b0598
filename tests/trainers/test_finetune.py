from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from trainers import Hyperparams, NonFiniteLossError, TrainSpec, fine_tune, load_npz
from trainers.data import Dataset, Split


@pytest.fixture(scope="module")
def small_breast(breast_npz: Path) -> Dataset:
    ds = load_npz(breast_npz)
    return Dataset(ds.source, ds.classes, Split(ds.train.images[:192], ds.train.labels[:192]),
                   ds.val, None)


def test_reports_every_epoch_and_keeps_the_best(small_breast: Dataset) -> None:
    seen: list[tuple[int, dict[str, float]]] = []

    def report(epoch: int, metrics: dict[str, float]) -> bool:
        seen.append((epoch, metrics))
        return False

    spec = TrainSpec("test_resnet", epochs=3, batch_size=32, weights="none", metric="auroc")
    r = fine_tune(small_breast, spec, Hyperparams(lr=1e-3, freeze_depth=1, aug_strength=0.3,
                                                  image_size=32), "cpu", report=report)
    assert [e for e, _ in seen] == [0, 1, 2]
    assert all({"accuracy", "balanced_accuracy", "auroc", "train_loss"} <= set(m)
               for _, m in seen)
    best = max(range(3), key=lambda e: seen[e][1]["auroc"])
    assert r.best_epoch == best and r.best_metrics["auroc"] == seen[best][1]["auroc"]
    assert not r.stopped_early and r.epochs_run == 3 and r.images_per_s > 0
    assert all(torch.isfinite(v.float()).all() for v in r.state.values())


def test_report_can_stop_the_run(small_breast: Dataset) -> None:
    spec = TrainSpec("test_resnet", epochs=5, batch_size=32, weights="none")
    r = fine_tune(small_breast, spec, Hyperparams(lr=1e-3, image_size=28), "cpu",
                  report=lambda epoch, m: epoch == 1)
    assert r.stopped_early and r.epochs_run == 2


def test_diverging_loss_stops_with_a_reason(small_breast: Dataset) -> None:
    spec = TrainSpec("test_resnet", epochs=5, batch_size=32, weights="none")
    with pytest.raises(NonFiniteLossError, match="training loss became") as e:
        fine_tune(small_breast, spec, Hyperparams(lr=1e12, image_size=28,
                                                  label_smoothing=0.0), "cpu")
    assert e.value.epoch <= 1 and not math.isfinite(e.value.loss)


def test_resume_continues_exactly_where_the_run_stopped(small_breast: Dataset,
                                                        tmp_path: Path) -> None:
    from trainers.finetune import TrainState

    spec = TrainSpec("test_resnet", epochs=4, batch_size=32, weights="none", seed=3)
    hp = Hyperparams(lr=1e-3, freeze_depth=1, aug_strength=0.5, image_size=28)
    saved: list[int] = []

    def checkpoint(state: TrainState) -> None:
        state.save(tmp_path / f"epoch{state.epoch}.pt")
        saved.append(state.epoch)

    full = fine_tune(small_breast, spec, hp, "cpu", checkpoint=checkpoint)
    assert saved == [0, 1, 2]  # no checkpoint after the last epoch: the run is over
    state = TrainState.load(tmp_path / "epoch1.pt")
    reported: list[int] = []
    resumed = fine_tune(small_breast, spec, hp, "cpu", resume=state,
                        report=lambda e, m: bool(reported.append(e)))
    assert reported == [2, 3]
    for a, b in zip(full.history, resumed.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["auroc"] == pytest.approx(b["auroc"], abs=1e-6)
    assert resumed.best_epoch == full.best_epoch


def test_image_cache_goes_to_the_device_only_when_it_fits() -> None:
    from trainers.finetune import CACHE_SHARE_OF_FREE, cache_fits

    free = 8 * 2**30
    share = CACHE_SHARE_OF_FREE
    assert cache_fits(int(share * free), free, share)
    assert not cache_fits(int(share * free) + 1, free, share)
    assert not cache_fits(1, 0, share)


def test_cpu_cache_is_resized_once_and_stays_uint8(small_breast: Dataset) -> None:
    from trainers.finetune import place_split
    from trainers.preprocess import Preprocess

    prep = Preprocess(40, 3, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    placed = place_split(small_breast.train, prep, torch.device("cpu"))
    assert placed.images.dtype == torch.uint8 and placed.images.shape[-2:] == (40, 40)
    assert torch.equal(placed.labels, small_breast.train.labels)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cache_too_big_for_the_gpu_streams_from_pinned_host_memory(
        small_breast: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    import trainers.finetune as ft

    monkeypatch.setattr(ft, "CACHE_SHARE_OF_FREE", 0.0)  # nothing fits
    prep = ft.Preprocess(28, 3, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    placed = ft.place_split(small_breast.train, prep, torch.device("cuda"))
    assert placed.images.device.type == "cpu" and placed.images.is_pinned()
    spec = TrainSpec("test_resnet", epochs=1, batch_size=32, weights="none")
    r = fine_tune(small_breast, spec, Hyperparams(lr=1e-3, image_size=28), "cuda")
    assert r.epochs_run == 1 and math.isfinite(r.best_metrics["accuracy"])
