"""Data checks before tuning: counts, unreadable files, empty classes, duplicates within and
across splits (train/val/test leakage, exact and near), class imbalance, mixed sizes.

Near duplicates use a difference hash (dHash, 64 bits of horizontal gradients on a 9x8
thumbnail), robust to re-encoding and small intensity changes.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from trainers.data import (
    DEFAULT_SPLIT_SEED,
    DEFAULT_TEST_FRACTION,
    DEFAULT_VAL_FRACTION,
    IMAGE_SUFFIXES,
    Dataset,
    _list_class_dirs,
    _list_images,
    _read_image,
    check_folder_layout,
    check_split_sizes,
    load_npz,
    resolve_data,
    stratified_split,
)
from trainers.errors import TrainerError

NEAR_BITS = 3  # dHash Hamming distance that makes a near-duplicate candidate ...
NEAR_CORR = 0.98  # ... confirmed by pixel correlation on a 32x32 grayscale thumbnail
IMBALANCE_RATIO = 5.0


@dataclass
class ImageRef:
    split: str
    index: int
    path: str | None = None

    def __str__(self) -> str:
        return self.path or f"{self.split}[{self.index}]"


@dataclass
class DataReport:
    source: str
    classes: list[str]
    counts: dict[str, dict[str, int]]  # split -> class -> images
    unreadable: list[str] = field(default_factory=list)
    empty_classes: list[str] = field(default_factory=list)  # "split/class"
    duplicates_within: list[list[str]] = field(default_factory=list)
    leaks_exact: list[list[str]] = field(default_factory=list)  # across splits
    leaks_near: list[tuple[str, str, int]] = field(default_factory=list)
    sizes: list[str] = field(default_factory=list)
    channels: list[int] = field(default_factory=list)
    unusable: list[str] = field(default_factory=list)  # why training could not load it at all

    @property
    def imbalance(self) -> float:
        per = self.counts.get("train", self.counts.get("all", {}))
        train = [n for n in per.values() if n > 0]
        return max(train) / min(train) if train else 1.0

    def problems(self) -> list[str]:
        """Issues that stop study creation unless overridden (an unusable layout stops it
        regardless: the loader refuses it too)."""
        out = list(self.unusable)
        if self.unreadable:
            out.append(f"{len(self.unreadable)} unreadable image(s), e.g. {self.unreadable[0]}")
        if self.empty_classes:
            out.append(f"empty class(es), no images: {', '.join(self.empty_classes)}")
        if self.leaks_exact:
            first = self.leaks_exact[0]
            out.append(f"{len(self.leaks_exact)} image(s) duplicated across splits "
                       f"(train/val/test leakage), e.g. {' = '.join(first)}")
        return out

    def warnings(self, metric: str = "accuracy") -> list[str]:
        out = []
        if self.leaks_near:
            a, b, d = self.leaks_near[0]
            out.append(f"{len(self.leaks_near)} near-duplicate pair(s) across splits, e.g. "
                       f"{a} ~ {b} (hash distance {d})")
        if self.duplicates_within:
            out.append(f"{len(self.duplicates_within)} group(s) of identical images within a "
                       f"split, e.g. {' = '.join(self.duplicates_within[0])}")
        if self.imbalance >= IMBALANCE_RATIO:
            hint = "; consider --metric balanced_accuracy or --metric auroc" \
                if metric == "accuracy" else ""
            out.append(f"classes are imbalanced {self.imbalance:.1f}:1 in train{hint}")
        if len(self.sizes) > 1:
            out.append(f"mixed image sizes {', '.join(self.sizes[:4])} (resized to one size)")
        if len(self.channels) > 1:
            out.append("mixed grayscale and colour images (converted to one channel count)")
        return out

    def to_dict(self, metric: str = "accuracy") -> dict[str, Any]:
        d = asdict(self)
        d["leaks_near"] = [list(x) for x in self.leaks_near]
        d.update(imbalance=round(self.imbalance, 2), problems=self.problems(),
                 warnings=self.warnings(metric))
        return d


def dhash(images: torch.Tensor) -> np.ndarray:
    """64-bit difference hashes of uint8 ``(N, C, H, W)`` images."""
    gray = images.float().mean(dim=1, keepdim=True)
    thumb = F.interpolate(gray, size=(8, 9), mode="area")[:, 0]
    bits = (thumb[:, :, 1:] > thumb[:, :, :-1]).reshape(len(images), 64).numpy()
    weights = (1 << np.arange(64, dtype=np.uint64)).astype(np.uint64)
    return (bits.astype(np.uint64) * weights).sum(axis=1).astype(np.uint64)


def _thumb(image: torch.Tensor) -> torch.Tensor:
    gray = image.float().mean(dim=0, keepdim=True)[None]
    t = F.interpolate(gray, size=(32, 32), mode="area").flatten()
    t = t - t.mean()
    return t / (t.norm() + 1e-6)


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(_thumb(a) @ _thumb(b))


_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per uint64 (a byte lookup table: fast for the all-pairs comparison)."""
    return _BITS[x.view(np.uint8).reshape(-1, 8)].sum(axis=1)


def _find_duplicates(report: DataReport, refs: list[ImageRef], images: list[torch.Tensor]
                     ) -> None:
    groups: dict[str, list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(hashlib.sha1(img.numpy().tobytes()).hexdigest(), []).append(i)
    exact_pairs: set[tuple[int, int]] = set()
    for members in groups.values():
        if len(members) < 2:
            continue
        splits = {refs[i].split for i in members}
        names = [str(refs[i]) for i in members]
        (report.leaks_exact if len(splits) > 1 else report.duplicates_within).append(names)
        exact_pairs.update((a, b) for a in members for b in members if a < b)
    # near duplicates across splits, by dHash distance
    by_size: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(images):
        by_size.setdefault(tuple(img.shape), []).append(i)
    hashes = np.zeros(len(images), dtype=np.uint64)
    for idx in by_size.values():
        hashes[idx] = dhash(torch.stack([images[i] for i in idx]))
    split_of = np.array([r.split for r in refs])
    for i in range(len(images)):
        later = np.arange(i + 1, len(images))
        later = later[split_of[later] != split_of[i]]
        if not len(later):
            continue
        dist = _popcount(hashes[later] ^ hashes[i])
        for j, d in zip(later[dist <= NEAR_BITS], dist[dist <= NEAR_BITS], strict=True):
            j = int(j)
            if (i, j) not in exact_pairs and _correlation(images[i], images[j]) >= NEAR_CORR:
                report.leaks_near.append((str(refs[i]), str(refs[j]), int(d)))


def _check_dataset(ds: Dataset) -> DataReport:
    counts = {}
    refs: list[ImageRef] = []
    images: list[torch.Tensor] = []
    for name in ("train", "val", "test"):
        split = ds.test if name == "test" else ds.split(name)
        if split is None:
            continue
        counts[name] = {c: int((split.labels == i).sum()) for i, c in enumerate(ds.classes)}
        for i in range(len(split)):
            refs.append(ImageRef(name, i))
            images.append(split.images[i])
    h, w = ds.image_size
    report = DataReport(ds.source, ds.classes, counts, sizes=[f"{h}x{w}"],
                        channels=[ds.channels])
    report.empty_classes = [f"{s}/{c}" for s, per in counts.items() for c, n in per.items()
                            if n == 0 and s == "train"]
    _find_duplicates(report, refs, images)
    return report


def _check_folder(root: Path) -> DataReport:
    layout = ["train", "val", "test"] if (root / "train").is_dir() else [""]
    classes = sorted({p.name for s in layout if (root / s).is_dir()
                      for p in _list_class_dirs(root / s)})
    counts: dict[str, dict[str, int]] = {}
    refs: list[ImageRef] = []
    images: list[torch.Tensor] = []
    report = DataReport(str(root), classes, counts)
    sizes, channels = set(), set()
    for split in layout:
        if not (root / split).is_dir():
            continue
        name = split or "all"
        counts[name] = {}
        for c in classes:
            files = _list_images(root / split / c) if (root / split / c).is_dir() else []
            stray = [f for f in (root / split / c).rglob("*") if f.is_file()
                     and f.suffix.lower() not in IMAGE_SUFFIXES] if (root / split / c).is_dir() \
                else []
            ok = 0
            for f in files:
                try:
                    arr = _read_image(f)
                except TrainerError:
                    report.unreadable.append(str(f))
                    continue
                if arr.size == 0:
                    report.unreadable.append(str(f))
                    continue
                t = torch.from_numpy(arr)
                t = t.permute(2, 0, 1) if t.ndim == 3 else t[None]
                sizes.add(f"{t.shape[1]}x{t.shape[2]}")
                channels.add(int(t.shape[0]))
                refs.append(ImageRef(name, len(refs), str(f.relative_to(root))))
                images.append(t)
                ok += 1
            report.unreadable.extend(str(f) for f in stray if f.name not in (".DS_Store",))
            counts[name][c] = ok
            if ok == 0 and (split in ("train", "") or (root / split / c).is_dir()):
                report.empty_classes.append(f"{name}/{c}")
    report.sizes, report.channels = sorted(sizes), sorted(channels)
    report.unusable = _layout_problems(root, layout, classes, counts)
    _find_duplicates(report, refs, images)
    return report


def _layout_problems(root: Path, layout: list[str], classes: list[str],
                     counts: dict[str, dict[str, int]]) -> list[str]:
    """What would make ``load_image_folder`` refuse this folder, from the counts alone."""
    try:
        check_folder_layout(root)
        if layout == [""]:  # one tree, split 70/15/15 the way the loader splits it
            labels = torch.tensor([i for i, c in enumerate(classes)
                                   for _ in range(counts["all"].get(c, 0))], dtype=torch.int64)
            parts = stratified_split(labels, (DEFAULT_VAL_FRACTION, DEFAULT_TEST_FRACTION),
                                     DEFAULT_SPLIT_SEED)
            check_split_sizes(str(root), {"train": len(parts[0]), "val": len(parts[1])})
        else:
            for split in ("train", "val"):
                if not sum(counts.get(split, {}).values()):
                    raise TrainerError(f"{root}/{split} holds no readable images; expected "
                                       f"{root}/{split}/<class>/*.png or *.jpg")
    except TrainerError as e:
        return [str(e)]
    return []


def check_data(spec: str, data_dir: str | Path | None = None) -> DataReport:
    """Check ``--data`` (MedMNIST name, ``.npz`` or image folder) without stopping at the first
    problem."""
    path = resolve_data(spec, data_dir)
    if path.is_dir():
        return _check_folder(path)
    return _check_dataset(load_npz(path))
