"""Load image-classification data once into uint8 tensors.

Small medical datasets fit in memory many times over, so every image is decoded exactly once
into a ``(N, C, H, W)`` uint8 tensor; training then slices batches out of that tensor (on the
training device when it fits) instead of re-decoding files every epoch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from trainers.errors import TrainerError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MEDMNIST_SIZES = (28, 64, 128, 224)
DEFAULT_SPLIT_SEED = 0
DEFAULT_VAL_FRACTION = 0.15
DEFAULT_TEST_FRACTION = 0.15


@dataclass
class Split:
    """One split: uint8 images ``(N, C, H, W)`` and int64 labels ``(N,)``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class Dataset:
    """A decoded dataset with its own train/val(/test) splits."""

    source: str
    classes: list[str]
    train: Split
    val: Split
    test: Split | None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train.images.shape[2]), int(self.train.images.shape[3])

    def split(self, name: str) -> Split:
        if name == "test":
            if self.test is None:
                raise TrainerError(
                    f"{self.source} has no test split; add ROOT/test/<class>/... to the folder"
                )
            return self.test
        if name not in ("train", "val"):
            raise TrainerError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")
        return self.train if name == "train" else self.val

    def summary(self) -> str:
        parts = [f"{name} {len(s)}" for name, s in (("train", self.train), ("val", self.val),
                                                     ("test", self.test)) if s is not None]
        h, w = self.image_size
        return (f"{self.source}: {self.num_classes} classes, {self.channels} channel(s), "
                f"{h}x{w} px, " + " / ".join(parts))


# --------------------------------------------------------------------------- MedMNIST .npz


@functools.cache
def _catalog() -> dict[str, Any]:
    text = resources.files("trainers").joinpath("medmnist_catalog.json").read_text()
    catalog: dict[str, Any] = json.loads(text)
    return catalog


def _to_nchw(images: np.ndarray, path: str, key: str) -> torch.Tensor:
    if images.dtype != np.uint8:
        if images.dtype.kind not in "uif":
            raise TrainerError(f"{path}: {key} has dtype {images.dtype}; store pixels as "
                               "uint8 (or floats in 0..1)")
        low, high = (float(images.min()), float(images.max())) if images.size else (0.0, 0.0)
        if low < 0 or high > 255:
            raise TrainerError(f"{path}: {key} must hold 0..255 (or 0..1) pixel values, got "
                               f"{low:g}..{high:g}")
        if images.dtype.kind == "f" and high <= 1.0:  # floats in [0, 1]: scale, don't truncate
            images = images * 255.0
        images = np.rint(images).astype(np.uint8)
    if images.ndim == 3:  # (N, H, W) grayscale
        images = images[:, None]
    elif images.ndim == 4 and images.shape[-1] in (1, 3):
        images = images.transpose(0, 3, 1, 2)  # NHWC (MedMNIST's RGB layout) -> NCHW
    elif not (images.ndim == 4 and images.shape[1] in (1, 3)):
        raise TrainerError(
            f"{path}: {key} has shape {images.shape}; expected (N, H, W) or (N, H, W, C) 2D "
            "images (3D MedMNIST volumes are not supported)"
        )
    return torch.from_numpy(np.ascontiguousarray(images))


def _labels(labels: np.ndarray, path: str, key: str) -> torch.Tensor:
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise TrainerError(
            f"{path}: {key} has shape {labels.shape}; expected one class per image, (N,) or "
            "(N, 1) (multi-label data such as ChestMNIST is not supported)"
        )
    return torch.from_numpy(labels.astype(np.int64))


def load_npz(path: str | Path) -> Dataset:
    """Load a MedMNIST-layout ``.npz`` (train/val/test images and labels)."""
    path = str(path)
    if os.path.isfile(path) and not zipfile.is_zipfile(path):
        raise TrainerError(f"{path} is not a .npz file (not a zip archive); pass a MedMNIST "
                           ".npz or an image folder")
    try:
        npz = np.load(path, allow_pickle=False)
    except FileNotFoundError as e:
        raise TrainerError(f"data file {path} does not exist") from e
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise TrainerError(f"{path} is not a readable .npz file ({e}); re-download it") from e
    with npz:
        missing = [k for s in ("train", "val") for k in (f"{s}_images", f"{s}_labels")
                   if k not in npz.files]
        if missing:
            raise TrainerError(
                f"{path} lacks {', '.join(missing)}; a MedMNIST .npz holds train_images, "
                "train_labels, val_images, val_labels (and test_*)"
            )
        splits: dict[str, Split] = {}
        for s in SPLITS:
            if f"{s}_images" not in npz.files:
                continue
            try:
                raw_images, raw_labels = npz[f"{s}_images"], npz[f"{s}_labels"]
            except (ValueError, KeyError) as e:
                raise TrainerError(f"{path}: cannot read the {s} arrays ({e}); store plain "
                                   "numeric arrays (no Python objects)") from e
            images = _to_nchw(raw_images, path, f"{s}_images")
            labels = _labels(raw_labels, path, f"{s}_labels")
            if len(images) != len(labels):
                raise TrainerError(f"{path}: {s} has {len(images)} images but "
                                   f"{len(labels)} labels")
            splits[s] = Split(images, labels)
    for s in ("train", "val"):
        if len(splits[s]) == 0:
            raise TrainerError(f"{path}: the {s} split has no images")
    shapes = {tuple(sp.images.shape[1:]) for sp in splits.values()}
    if len(shapes) != 1:
        raise TrainerError(f"{path}: splits have different image shapes {sorted(shapes)}")
    num_classes = int(max(int(sp.labels.max()) for sp in splits.values() if len(sp)) + 1)
    if min(int(sp.labels.min()) for sp in splits.values() if len(sp)) < 0:
        raise TrainerError(f"{path}: labels must be 0..K-1, found a negative label")
    stem = Path(path).stem.split("_")[0].lower()
    entry = _catalog().get(stem)
    if entry and len(entry["labels"]) == num_classes:
        classes = [entry["labels"][str(i)] for i in range(num_classes)]
    else:
        classes = [str(i) for i in range(num_classes)]
    if num_classes < 2:
        raise TrainerError(f"{path}: only one class found; classification needs at least two")
    check_labels(path, splits["train"], [(s, sp) for s, sp in splits.items() if s != "train"])
    return Dataset(source=path, classes=classes, train=splits["train"], val=splits["val"],
                   test=splits.get("test"), info={"format": "npz"})


def check_labels(where: str, train: Split, others: list[tuple[str, Split]]) -> None:
    """Every class that is validated or tested on must be trained on."""
    known = set(train.labels.tolist())
    for name, split in others:
        unseen = sorted(set(split.labels.tolist()) - known)
        if unseen:
            raise TrainerError(f"{where}: class {unseen[0]} appears in {name} but never in "
                               "train; add training images of it or remove it from "
                               f"{name}")


# --------------------------------------------------------------------------- image folders


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            image: Image.Image = im
            if image.mode not in ("L", "RGB"):
                image = image.convert("RGB" if image.mode in ("RGBA", "P", "CMYK", "YCbCr")
                                      or len(image.getbands()) >= 3 else "L")
            return np.array(image, dtype=np.uint8)  # a writable copy for torch
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise TrainerError(f"cannot read image {path} ({e}); delete or replace the file") from e


def _list_class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _list_images(class_dir: Path) -> list[Path]:
    return sorted(p for p in class_dir.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _stack(arrays: list[np.ndarray], where: str) -> torch.Tensor:
    """Stack decoded images to (N, C, H, W); mixed sizes are resized to the most common size."""
    channels = 3 if any(a.ndim == 3 for a in arrays) else 1
    sizes: dict[tuple[int, int], int] = {}
    for a in arrays:
        sizes[a.shape[:2]] = sizes.get(a.shape[:2], 0) + 1
    target = max(sizes, key=lambda s: sizes[s])
    out = torch.empty((len(arrays), channels, *target), dtype=torch.uint8)
    for i, a in enumerate(arrays):
        t = torch.from_numpy(a)
        t = t.permute(2, 0, 1) if t.ndim == 3 else t[None]
        if t.shape[0] != channels:
            t = t.expand(channels, -1, -1)
        if tuple(t.shape[1:]) != target:
            t = resize_uint8(t[None], target)[0]
        out[i] = t
    if len(sizes) > 1:
        log.warning("%s: images have %d different sizes; resized to the most common %dx%d",
                    where, len(sizes), *target)
    return out


def _load_tree(root: Path, classes: list[str]) -> Split:
    arrays: list[np.ndarray] = []
    labels: list[int] = []
    for idx, name in enumerate(classes):
        class_dir = root / name
        if not class_dir.is_dir():
            continue
        for f in _list_images(class_dir):
            arrays.append(_read_image(f))
            labels.append(idx)
    if not arrays:
        raise TrainerError(f"{root} holds no images; expected {root}/<class>/*.png or *.jpg")
    return Split(_stack(arrays, str(root)), torch.tensor(labels, dtype=torch.int64))


def stratified_split(labels: torch.Tensor, fractions: tuple[float, ...], seed: int
                     ) -> list[torch.Tensor]:
    """Split indices per class by ``fractions`` (the rest goes to the first part)."""
    gen = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[] for _ in range(len(fractions) + 1)]
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        start = 0
        sizes = [int(round(f * len(idx))) for f in fractions]
        if len(idx) >= len(fractions) + 1:  # every split gets at least one image of each class
            sizes = [max(1, s) for s in sizes]
        rest = len(idx) - sum(sizes)
        for part, n in zip(parts, [rest, *sizes], strict=True):
            part.append(idx[start:start + n])
            start += n
    return [torch.sort(torch.cat(p)).values for p in parts]


def check_folder_layout(root: Path) -> list[str]:
    """The class names of an image folder, or the reason it cannot be used (also what
    ``hpo data check`` reports, so the check and the loader never disagree)."""
    if not root.is_dir():
        raise TrainerError(f"data folder {root} does not exist")
    if (root / "train").is_dir():
        if not (root / "val").is_dir():
            raise TrainerError(f"{root} has train/ but no val/; add {root}/val/<class>/... "
                               "(validation images are needed to tune)")
        classes = [p.name for p in _list_class_dirs(root / "train")]
        if len(classes) < 2:
            raise TrainerError(f"{root}/train needs at least two class folders, found "
                               f"{len(classes)}")
        extra = [p.name for s in ("val", "test") if (root / s).is_dir()
                 for p in _list_class_dirs(root / s) if p.name not in classes]
        if extra:
            raise TrainerError(f"{root}: class folder(s) {', '.join(sorted(set(extra)))} exist "
                               "in val/test but not in train/")
        return classes
    classes = [p.name for p in _list_class_dirs(root)]
    if len(classes) < 2:
        raise TrainerError(
            f"{root} needs ROOT/train/<class>/ and ROOT/val/<class>/, or at least two "
            f"class folders ROOT/<class>/; found {len(classes)} class folder(s)"
        )
    return classes


def check_split_sizes(where: str, sizes: dict[str, int]) -> None:
    """Training needs images in train and val (a 70/15/15 split of a tiny folder leaves none)."""
    for name in ("train", "val"):
        if sizes.get(name, 0) == 0:
            raise TrainerError(f"{where}: the {name} split is empty (too few images to split "
                               "70/15/15; use at least 3 images per class, or ROOT/train and "
                               "ROOT/val folders)")


def load_image_folder(root: str | Path, split_seed: int = DEFAULT_SPLIT_SEED) -> Dataset:
    """Load ``ROOT/{train,val[,test]}/<class>/*`` or a single ``ROOT/<class>/*`` tree.

    A single tree is split stratified (70/15/15) with ``split_seed``, which is recorded in
    ``Dataset.info`` so the same split can be rebuilt.
    """
    root = Path(root)
    classes = check_folder_layout(root)
    if (root / "train").is_dir():
        train = _load_tree(root / "train", classes)
        val = _load_tree(root / "val", classes)
        test = _load_tree(root / "test", classes) if (root / "test").is_dir() else None
        info: dict[str, Any] = {"format": "folder", "layout": "splits"}
    else:
        every = _load_tree(root, classes)
        tr, va, te = stratified_split(every.labels, (DEFAULT_VAL_FRACTION, DEFAULT_TEST_FRACTION),
                                      split_seed)
        train = Split(every.images[tr], every.labels[tr])
        val = Split(every.images[va], every.labels[va])
        test = Split(every.images[te], every.labels[te])
        info = {"format": "folder", "layout": "single", "split_seed": split_seed,
                "split_fractions": [1 - DEFAULT_VAL_FRACTION - DEFAULT_TEST_FRACTION,
                                    DEFAULT_VAL_FRACTION, DEFAULT_TEST_FRACTION]}
    check_split_sizes(str(root), {"train": len(train), "val": len(val)})
    check_labels(str(root), train, [(n, s) for n, s in (("val", val), ("test", test))
                                    if s is not None and len(s)])
    shapes = {tuple(s.images.shape[1:]) for s in (train, val, test) if s is not None}
    if len(shapes) > 1:  # splits decoded at different sizes/channels: bring them to train's
        c, h, w = train.images.shape[1:]
        for s in (val, test):
            if s is not None and tuple(s.images.shape[1:]) != (c, h, w):
                imgs = s.images.expand(-1, c, -1, -1) if s.images.shape[1] == 1 else s.images
                s.images = resize_uint8(imgs, (int(h), int(w))) if c == imgs.shape[1] else imgs
    return Dataset(source=str(root), classes=classes, train=train, val=val, test=test, info=info)


# --------------------------------------------------------------------------- name resolution


def default_data_dir() -> Path:
    """``HPO_DATA_DIR`` or the user cache folder, where MedMNIST names are looked up."""
    env = os.environ.get("HPO_DATA_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hpo" / "data"


def parse_medmnist_name(spec: str) -> tuple[str, int] | None:
    """``breastmnist`` -> (breastmnist, 28); ``breastmnist_64`` or ``breastmnist:64`` -> 64."""
    name, size = spec.lower(), 28
    for sep in (":", "_", "@"):
        if sep in name:
            base, _, tail = name.partition(sep)
            if tail.isdigit():
                name, size = base, int(tail)
                break
    if name not in _catalog():
        return None
    return name, size


def medmnist_filename(name: str, size: int) -> str:
    return f"{name}.npz" if size == 28 else f"{name}_{size}.npz"


def _download(url: str, md5: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s to %s", url, dest)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".part")
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as resp:
            while chunk := resp.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5:
            raise TrainerError(f"download of {url} is corrupt (md5 {digest.hexdigest()}, "
                               f"expected {md5}); run the command again")
        shutil.move(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def resolve_data(spec: str, data_dir: str | Path | None = None, download: bool = True) -> Path:
    """Turn ``--data`` (a path or a MedMNIST name such as ``breastmnist_64``) into a local path."""
    path = Path(spec).expanduser()
    if path.exists():
        return path
    parsed = parse_medmnist_name(spec)
    if parsed is None:
        hint = ", ".join(sorted(_catalog()))
        raise TrainerError(
            f"data {spec!r} is neither an existing file or folder nor a MedMNIST name "
            f"({hint}); check the path"
        )
    name, size = parsed
    entry = _catalog()[name]
    if str(size) not in entry["files"]:
        raise TrainerError(f"MedMNIST {name} comes in sizes {', '.join(entry['files'])}, "
                           f"not {size}")
    if entry["task"].startswith("multi-label"):
        raise TrainerError(f"{name} is multi-label; hpo tunes single-label classifiers")
    directory = Path(data_dir) if data_dir is not None else default_data_dir()
    local = directory / medmnist_filename(name, size)
    if local.exists():
        return local
    url, md5 = entry["files"][str(size)]["url"], entry["files"][str(size)]["md5"]
    if download:
        try:
            _download(url, md5, local)
            return local
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            raise TrainerError(
                f"{local.name} is not in {directory} and downloading it failed ({e}); "
                f"download {url.split('?')[0]} and put it at {local}, or set HPO_DATA_DIR "
                "to the folder that holds it"
            ) from e
    raise TrainerError(f"{local.name} is not in {directory}; put it there or set HPO_DATA_DIR")


def load_dataset(spec: str, data_dir: str | Path | None = None, split_seed: int = 0,
                 download: bool = True) -> Dataset:
    """Load ``--data``: a MedMNIST name, an ``.npz`` file, or an image folder."""
    path = resolve_data(spec, data_dir, download=download)
    if path.is_dir():
        return load_image_folder(path, split_seed=split_seed)
    if path.suffix.lower() == ".npz":
        return load_npz(path)
    raise TrainerError(f"data {path} is a file but not a .npz; pass a MedMNIST .npz or a folder "
                       "of class subfolders")


# --------------------------------------------------------------------------- tensor helpers


def resize_uint8(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a uint8 batch ``(N, C, H, W)`` once (antialiased when shrinking)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    out = F.interpolate(images.float(), size=size, mode="bilinear", align_corners=False,
                        antialias=bool(size[0] < images.shape[-2]))
    return out.round_().clamp_(0, 255).to(torch.uint8)
