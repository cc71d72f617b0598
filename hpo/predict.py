"""Load an exported folder and classify images, folders or a MedMNIST ``.npz`` test split."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hpo.errors import HpoError
from hpo.export import CONFIG_FILE, WEIGHTS_FILE, preprocess_from
from trainers import compute_metrics, load_npz, predict_probs, resolve_device
from trainers.checkpoint import rebuild_model
from trainers.data import IMAGE_SUFFIXES, _read_image, resize_uint8


@dataclass
class Predictions:
    names: list[str]
    probs: torch.Tensor
    classes: list[str]
    labels: torch.Tensor | None = None

    @property
    def predicted(self) -> list[str]:
        return [self.classes[i] for i in self.probs.argmax(dim=1).tolist()]

    def metrics(self) -> dict[str, float] | None:
        return compute_metrics(self.probs, self.labels) if self.labels is not None else None


def load_exported(folder: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    folder = Path(folder)
    cfg_path, weights = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not cfg_path.is_file() or not weights.is_file():
        raise HpoError(f"{folder} is not an hpo export (needs {CONFIG_FILE} and {WEIGHTS_FILE}); "
                       "create one with `hpo export`")
    config = json.loads(cfg_path.read_text())
    import safetensors.torch

    state = safetensors.torch.load_file(str(weights))
    model = rebuild_model(state, {"model": config["architecture"],
                                  "num_classes": config["num_classes"],
                                  "in_chans": config["in_chans"]})
    return model, config


def _decode(files: list[Path], size: int, channels: int) -> torch.Tensor:
    """Each image straight to the model's size and channels (independent of the others)."""
    out = torch.empty((len(files), channels, size, size), dtype=torch.uint8)
    for i, f in enumerate(files):
        t = torch.from_numpy(_read_image(f))
        t = t.permute(2, 0, 1) if t.ndim == 3 else t[None]
        if t.shape[0] != channels:
            t = (t.float().mean(dim=0, keepdim=True).round().to(torch.uint8) if channels == 1
                 else t.expand(channels, -1, -1))
        out[i] = resize_uint8(t[None], (size, size))[0]
    return out


def _gather(inputs: list[str], size: int, channels: int
            ) -> tuple[list[str], torch.Tensor, torch.Tensor | None]:
    if len(inputs) == 1 and inputs[0].endswith(".npz"):
        ds = load_npz(inputs[0])
        split = ds.test if ds.test is not None else ds.val
        name = "test" if ds.test is not None else "val"
        names = [f"{inputs[0]}[{name}][{i}]" for i in range(len(split))]
        return names, split.images, split.labels
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise HpoError(f"folder {p} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        elif p.is_file():
            if p.suffix.lower() == ".npz":
                raise HpoError(f"pass a .npz on its own (got {p} with other inputs)")
            files.append(p)
        else:
            raise HpoError(f"input {p} does not exist; pass image files, a folder or a .npz")
    return [str(f) for f in files], _decode(files, size, channels), None


def predict(folder: str | Path, inputs: list[str], device: str = "cpu") -> Predictions:
    dev = resolve_device(device)  # a bad --device fails before anything is loaded
    model, config = load_exported(folder)
    model.to(dev)
    names, images, labels = _gather(inputs, int(config["image_size"]),
                                    int(config["data_channels"]))
    if images.shape[1] != config["data_channels"] and images.shape[1] == 3 \
            and config["data_channels"] == 1:
        images = images.float().mean(dim=1, keepdim=True).round().to(torch.uint8)
    prep = preprocess_from(config)
    probs = predict_probs(model, prep.resize(images), prep, dev)
    return Predictions(names, probs, list(config["classes"]), labels)


def as_rows(p: Predictions) -> list[dict[str, Any]]:
    return [{"input": n, "class": c, "probs": np.round(pr.numpy(), 4).tolist()}
            for n, c, pr in zip(p.names, p.predicted, p.probs, strict=True)]
