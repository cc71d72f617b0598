from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainers import TrainerError, load_dataset, load_image_folder, load_npz, resolve_data
from trainers.data import stratified_split


def test_breastmnist_loads_with_official_splits(breast_npz: Path) -> None:
    ds = load_npz(breast_npz)
    assert (len(ds.train), len(ds.val), len(ds.test or [])) == (546, 78, 156)
    assert ds.train.images.dtype == torch.uint8
    assert tuple(ds.train.images.shape[1:]) == (1, 28, 28)
    assert ds.train.labels.dtype == torch.int64 and ds.train.labels.ndim == 1
    assert ds.classes == ["malignant", "normal, benign"]
    raw = np.load(breast_npz)
    assert torch.equal(ds.val.images[:, 0], torch.from_numpy(raw["val_images"]))


def test_npz_with_flat_labels_and_rgb_channels_last(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 30), ("val", 9), ("test", 6)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 4, (n,), dtype=np.uint8)
        arrays[f"{split}_labels"][:4] = np.arange(4)
    np.savez(tmp_path / "mine.npz", **arrays)
    ds = load_npz(tmp_path / "mine.npz")
    assert ds.channels == 3 and ds.image_size == (32, 32) and ds.num_classes == 4
    assert torch.equal(ds.train.images[5].permute(1, 2, 0),
                       torch.from_numpy(arrays["train_images"][5]))


def test_npz_missing_keys_is_a_clear_error(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", images=np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(TrainerError, match="lacks train_images"):
        load_npz(tmp_path / "bad.npz")


def _write_pngs(root: Path, images: torch.Tensor, labels: torch.Tensor, classes: list[str],
                prefix: str = "img") -> None:
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        d = root / classes[int(lab)]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0].numpy()).save(d / f"{prefix}{i:04d}.png")


@pytest.fixture
def breast_folder(tmp_path: Path, breast_npz: Path) -> Path:
    ds = load_npz(breast_npz)
    root = tmp_path / "breast"
    for name in ("train", "val", "test"):
        split = ds.split(name)
        _write_pngs(root / name, split.images[:60], split.labels[:60], ["malignant", "benign"])
    return root


def test_image_folder_with_splits_matches_the_pixels(breast_folder: Path, breast_npz: Path
                                                     ) -> None:
    ds = load_image_folder(breast_folder)
    src = load_npz(breast_npz)
    assert ds.classes == ["benign", "malignant"]
    assert len(ds.train) == 60 and len(ds.val) == 60 and ds.test is not None
    assert ds.channels == 1 and ds.image_size == (28, 28)
    # every decoded training image is one of the source images, bit for bit
    src_set = {bytes(img.numpy().tobytes()) for img in src.train.images[:60]}
    assert all(bytes(img.numpy().tobytes()) in src_set for img in ds.train.images)


def test_single_tree_is_split_stratified_with_recorded_seed(tmp_path: Path, breast_npz: Path
                                                            ) -> None:
    src = load_npz(breast_npz)
    root = tmp_path / "tree"
    _write_pngs(root, src.train.images[:200], src.train.labels[:200], ["malignant", "benign"])
    a = load_image_folder(root, split_seed=3)
    b = load_image_folder(root, split_seed=3)
    c = load_image_folder(root, split_seed=4)
    assert a.info["split_seed"] == 3 and a.test is not None
    assert len(a.train) + len(a.val) + len(a.test) == 200
    assert torch.equal(a.val.images, b.val.images)
    assert not torch.equal(a.val.images, c.val.images)
    for split in (a.train, a.val, a.test):
        assert set(split.labels.tolist()) == {0, 1}


def test_stratified_split_keeps_class_ratios() -> None:
    labels = torch.tensor([0] * 80 + [1] * 20)
    train, val, test = stratified_split(labels, (0.15, 0.15), seed=0)
    assert len(set(train.tolist()) | set(val.tolist()) | set(test.tolist())) == 100
    assert int((labels[val] == 1).sum()) == 3 and int((labels[val] == 0).sum()) == 12


def test_corrupt_image_names_the_file(breast_folder: Path) -> None:
    bad = breast_folder / "train" / "benign" / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(TrainerError, match="broken.png"):
        load_image_folder(breast_folder)


def test_folder_without_val_is_refused(tmp_path: Path, breast_folder: Path) -> None:
    (breast_folder / "val").rename(tmp_path / "elsewhere")
    with pytest.raises(TrainerError, match="no val/"):
        load_image_folder(breast_folder)


def test_medmnist_name_resolves_in_data_dir(data_dir: Path) -> None:
    assert resolve_data("breastmnist", data_dir) == data_dir / "breastmnist.npz"
    assert len(load_dataset("breastmnist", data_dir).train) == 546


def test_missing_medmnist_file_offline_says_where_to_put_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(TrainerError) as e:
        resolve_data("pneumoniamnist_64", tmp_path)
    assert f"put it at {tmp_path / 'pneumoniamnist_64.npz'}" in str(e.value)
    assert not list(tmp_path.iterdir())  # no partial download left behind


def test_unknown_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match="neither an existing file"):
        resolve_data(str(tmp_path / "nope.npz"), tmp_path)
    with pytest.raises(TrainerError, match="multi-label"):
        resolve_data("chestmnist", tmp_path, download=False)
