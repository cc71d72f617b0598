"""Self-describing checkpoints: safetensors weights with their metadata, never pickle."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import nn

from trainers.errors import TrainerError
from trainers.model import build_model

META_KEY = "hpo"
FORMAT = "hpo-checkpoint/1"


def save_checkpoint(path: str | Path, state: dict[str, torch.Tensor], meta: dict[str, Any]
                    ) -> None:
    """Write atomically (temp file + rename): a crash never leaves a half-written checkpoint."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".part")
    os.close(fd)
    try:
        safetensors.torch.save_file(
            {k: v.contiguous() for k, v in state.items()}, tmp,
            metadata={META_KEY: json.dumps({"format": FORMAT, **meta})},
        )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_meta(path: str | Path) -> dict[str, Any]:
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
    except (OSError, safetensors.SafetensorError) as e:
        raise TrainerError(f"{path} is not a readable safetensors checkpoint ({e})") from e
    if raw is None:
        raise TrainerError(f"{path} has no hpo metadata; it was not written by hpo")
    meta: dict[str, Any] = json.loads(raw)
    return meta


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    meta = read_meta(path)
    return safetensors.torch.load_file(str(path)), meta


def rebuild_model(state: dict[str, torch.Tensor], meta: dict[str, Any]) -> nn.Module:
    """A plain (unfrozen) timm model holding ``state``; frozen-BN checkpoints load too."""
    model, _ = build_model(meta["model"], int(meta["num_classes"]), weights="none",
                           in_chans=int(meta.get("in_chans", 3)))
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise TrainerError(
            f"checkpoint does not fit {meta['model']}: missing {missing[:3]}, unexpected "
            f"{result.unexpected_keys[:3]}"
        )
    model.eval()
    return model
