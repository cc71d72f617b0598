"""Build a timm classifier with the right head and freeze its first backbone stages.

Weights come from, in order: an explicit local file, a file named after the model in a weights
directory (``HPO_WEIGHTS_DIR``: air-gapped clusters need no flag and no hub lookup), or the hub.
``freeze_depth`` counts the backbone stages timm reports in ``feature_info`` (the stem belongs
to stage 1): 0 trains everything, the maximum leaves only what follows the last stage (the head)
trainable. BatchNorm layers in frozen stages become ``FrozenBatchNorm2d`` so their running
statistics stay exactly as pretrained.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from timm.utils.model import freeze_batch_norm_2d
from torch import nn

from trainers.errors import TrainerError

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
RANDOM_INIT = "none"


@dataclass(frozen=True)
class ModelInfo:
    """What a checkpoint needs to rebuild and feed the model."""

    name: str
    num_classes: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    stages: int
    weights: str  # file path, "hub:<tag>" or "none"


def check_model_name(name: str) -> None:
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('.')[0][:6]}*")[:5]
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise TrainerError(f"unknown timm model {name!r}{hint}; see timm.list_models()")


def find_local_weights(name: str, weights_dir: str | Path | None = None) -> Path | None:
    """Find ``<name>[.<tag>].safetensors|pth|bin`` in ``weights_dir`` or ``HPO_WEIGHTS_DIR``."""
    directory = weights_dir or os.environ.get("HPO_WEIGHTS_DIR")
    if not directory:
        return None
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise TrainerError(f"weights directory {root} (HPO_WEIGHTS_DIR) does not exist")
    arch, _, tag = name.partition(".")
    candidates = []
    for f in sorted(root.iterdir()):
        if not f.is_file() or f.suffix not in WEIGHT_SUFFIXES:
            continue
        stem = f.name[: -len(f.suffix)]
        if stem == name or (not tag and (stem == arch or stem.startswith(arch + "."))):
            candidates.append(f)
    candidates.sort(key=lambda f: (WEIGHT_SUFFIXES.index(f.suffix), f.name))
    return candidates[0] if candidates else None


def _pretrained_cfg(model: nn.Module) -> dict[str, Any]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return dict(cfg)


def build_model(name: str, num_classes: int, weights: str | None = None,
                weights_dir: str | Path | None = None, in_chans: int = 3) -> tuple[nn.Module,
                                                                                 ModelInfo]:
    """Create ``name`` with a fresh ``num_classes`` head.

    ``weights``: a file path, ``"none"`` (random init), or None (weights dir, then the hub).
    """
    check_model_name(name)
    source: str
    kwargs: dict[str, Any] = {"num_classes": num_classes, "in_chans": in_chans}
    if weights == RANDOM_INIT:
        model = timm.create_model(name, pretrained=False, **kwargs)
        source = RANDOM_INIT
    else:
        path = Path(weights).expanduser() if weights else find_local_weights(name, weights_dir)
        if path is not None:
            if not path.is_file():
                raise TrainerError(f"weights file {path} does not exist; pass an existing "
                                   ".safetensors or .pth file, or --weights none")
            model = timm.create_model(name, pretrained=False, **kwargs)
            load_weights_file(model, path, name)
            source = str(path.resolve())
        else:
            try:
                model = timm.create_model(name, pretrained=True, **kwargs)
            except Exception as e:  # hub errors come in many types (HTTP, offline, missing tag)
                raise TrainerError(
                    f"could not get pretrained weights for {name} from the model hub "
                    f"({type(e).__name__}); pass --weights FILE, put {name}.safetensors in "
                    "HPO_WEIGHTS_DIR, or use --weights none for random init"
                ) from e
            source = "hub:" + str(_pretrained_cfg(model).get("tag") or name)
    reset_head(model)
    cfg = _pretrained_cfg(model)
    info = ModelInfo(
        name=name,
        num_classes=num_classes,
        in_chans=in_chans,
        mean=tuple(float(x) for x in cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(float(x) for x in cfg.get("std", (0.229, 0.224, 0.225))),
        stages=count_stages(model),
        weights=source,
    )
    log.debug("built %s with %s weights", name, source)
    return model, info


def _head_keys(model: nn.Module) -> set[str]:
    names = _pretrained_cfg(model).get("classifier") or ()
    names = (names,) if isinstance(names, str) else tuple(names)
    return {f"{n}.{p}" for n in names for p in ("weight", "bias")}


def load_weights_file(model: nn.Module, path: Path, name: str) -> None:
    """Load every backbone tensor from ``path``; only the classifier may be absent or differ.

    timm's own file loading turns ``strict`` off whenever the class count changes, which would
    silently keep random weights for a file of another architecture; this refuses instead.
    """
    try:
        state = timm.models.load_state_dict(str(path), weights_only=True)
    except Exception as e:  # safetensors/torch raise many types for unreadable files
        raise TrainerError(f"cannot read weights file {path} ({type(e).__name__}: "
                           f"{str(e)[:120]}); pass a .safetensors or state-dict .pth") from e
    head = _head_keys(model)
    state = {k: v for k, v in state.items() if k not in head}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        lines = [ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln]
        first = (lines[0] if lines else str(e).strip().splitlines()[-1].strip())[:240]
        raise TrainerError(f"weights file {path} does not fit model {name} ({first}); pass "
                           "the weights saved for this architecture") from e
    missing = [k for k in result.missing_keys
               if k not in head and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in result.unexpected_keys if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise TrainerError(
            f"weights file {path} does not fit model {name} ({len(missing)} missing and "
            f"{len(unexpected)} unexpected tensors, e.g. {example}); pass the weights saved "
            "for this architecture"
        )


def reset_head(model: nn.Module) -> None:
    """Re-initialise the classifier small: timm's default init (fan-out based for EfficientNet
    and MobileNet) gives logits in the tens on pretrained features and a loss of ~9 at step 0."""
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    if isinstance(head, nn.Linear):
        nn.init.normal_(head.weight, std=0.01)
        if head.bias is not None:
            nn.init.zeros_(head.bias)


def _feature_modules(model: nn.Module) -> list[str]:
    feature_info = getattr(model, "feature_info", None)
    if not feature_info:
        raise TrainerError(f"{type(model).__name__} reports no backbone stages (feature_info); "
                           "use freeze_depth 0 or another timm model")
    return [f["module"] for f in feature_info]


def count_stages(model: nn.Module) -> int:
    try:
        return len(_feature_modules(model))
    except TrainerError:
        return 0


def parameter_stages(model: nn.Module) -> dict[str, int]:
    """Map every parameter name to its stage: 0..S-1 backbone stages, S = head (after them)."""
    features = _feature_modules(model)
    order = [n for n, _ in model.named_modules()]
    ends = []
    for f in features:
        members = [i for i, n in enumerate(order) if n == f or n.startswith(f + ".")]
        if not members:
            raise TrainerError(f"stage module {f} not found in {type(model).__name__}")
        ends.append(max(members))
    position = {n: i for i, n in enumerate(order)}
    stages: dict[str, int] = {}
    for pname, _ in model.named_parameters():
        owner = pname.rpartition(".")[0]
        pos = position[owner]
        stages[pname] = next((k for k, end in enumerate(ends) if pos <= end), len(ends))
    return stages


def check_freeze_depth(name: str, depth: int, stages: int) -> None:
    if not 0 <= depth <= stages:
        raise TrainerError(f"freeze_depth must be between 0 and {stages} for {name}, "
                           f"but got {depth}")


def freeze_stages(model: nn.Module, depth: int, name: str = "model") -> list[str]:
    """Freeze the first ``depth`` stages in place; returns the frozen parameter names."""
    stages = count_stages(model)
    check_freeze_depth(name, depth, stages)
    if depth == 0:
        return []
    stage_of = parameter_stages(model)
    frozen = [p for p, s in stage_of.items() if s < depth]
    params = dict(model.named_parameters())
    for p in frozen:
        params[p].requires_grad_(False)
    frozen_set = set(frozen)
    # Swap BatchNorm layers whose parameters are all frozen for FrozenBatchNorm2d.
    for mod_name, module in list(model.named_modules()):
        own = [f"{mod_name}.{n}" if mod_name else n for n, _ in module.named_parameters(
            recurse=False)]
        if not own or not all(p in frozen_set for p in own):
            continue
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            replacement = freeze_batch_norm_2d(module)
            parent_name, _, child = mod_name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, replacement)
    return frozen


def trainable_parameter_names(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the state dict (frozen BN buffers included)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in
            model.state_dict().items()}
