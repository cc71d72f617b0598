"""Export a trial's checkpoint as a folder that ships: weights.safetensors + config.json.

The test split is used exactly here, once, to report how the chosen model generalises.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import safetensors.torch
import torch
from optuna.artifacts import download_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import TrialState
from torch import nn

from hpo.errors import HpoError
from hpo.paths import check_output_location, write_error
from hpo.retention import ATTR_CHECKPOINT, ATTR_DELETED
from hpo.study import load_study
from storage import open_artifact_store
from storage.fs import make_folders, remove_new_folders
from trainers import Preprocess, compute_metrics, load_dataset, predict_probs, resolve_device
from trainers.checkpoint import load_checkpoint, rebuild_model

ATTR_EXPORTS = "hpo.exports"  # study attr: trial number -> export folder and test metrics
EXPORT_FORMAT = "hpo-export/1"
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"


@dataclass
class ExportResult:
    out: Path
    trial: int
    config: dict[str, Any]


def _pick_trial(study: optuna.Study, number: int | None) -> optuna.trial.FrozenTrial:
    trials = study.get_trials(deepcopy=False)
    with_ckpt = [t.number for t in trials if ATTR_CHECKPOINT in t.user_attrs]
    if number is None:
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        if not done:
            raise HpoError(f"study {study.study_name!r} has no complete trial yet; run workers "
                           "first (`hpo worker` or `hpo run`)")
        trial = study.best_trial
    else:
        matches = [t for t in trials if t.number == number]
        if not matches:
            raise HpoError(f"trial {number} does not exist in study {study.study_name!r} "
                           f"(trials 0..{len(trials) - 1})")
        trial = matches[0]
    deleted = set(study.user_attrs.get(ATTR_DELETED, []))
    with_ckpt = [n for n in with_ckpt if n not in deleted]
    if ATTR_CHECKPOINT not in trial.user_attrs or trial.number in deleted:
        why = ("its file was deleted to keep only the best (--keep-checkpoints)"
               if trial.number in deleted else "only complete trials among the best keep one")
        raise HpoError(f"trial {trial.number} ({trial.state.name.lower()}) has no stored "
                       f"checkpoint ({why}); trials with checkpoints: {with_ckpt or 'none'}")
    return trial


def _check_out_dir(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise HpoError(f"export folder {out} already exists and is not empty; pass a new --out "
                       "folder (nothing was overwritten)")
    check_output_location(out, "--out")


def export_trial(storage_url: str, study_name: str, out: str | Path, trial: int | None = None,
                 artifacts: str | None = None, device: str = "cpu") -> ExportResult:
    out = Path(out).expanduser()
    _check_out_dir(out)
    dev = resolve_device(device)
    loaded = load_study(storage_url, study_name)
    chosen = _pick_trial(loaded.study, trial)
    store = open_artifact_store(artifacts or os.environ.get("HPO_ARTIFACTS")
                                or loaded.config.artifacts, create=False)
    created: list[Path] = []
    try:
        created = make_folders(out.parent)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    except OSError as e:
        remove_new_folders(created)
        raise write_error(out, "--out", e) from e
    done = False
    try:
        ckpt = staging / "checkpoint.safetensors"
        try:
            download_artifact(artifact_store=store, file_path=str(ckpt),
                              artifact_id=chosen.user_attrs[ATTR_CHECKPOINT])
        except ArtifactNotFound as e:
            raise HpoError(f"checkpoint of trial {chosen.number} is missing from the artifact "
                           "folder; pass --artifacts with the folder the workers wrote to") from e
        state, meta = load_checkpoint(ckpt)
        model = rebuild_model(state, meta)
        dataset = load_dataset(loaded.config.data, download=False)
        model.to(dev)
        prep = preprocess_from(meta)
        val = _metrics(model, dataset.val.images, dataset.val.labels, prep, dev)
        test = (_metrics(model, dataset.test.images, dataset.test.labels, prep, dev)
                if dataset.test is not None else None)
        config = {
            "format": EXPORT_FORMAT,
            "architecture": meta["model"],
            "num_classes": meta["num_classes"],
            "classes": meta["classes"],
            "image_size": meta["image_size"],
            "in_chans": meta["in_chans"],
            "data_channels": meta["data_channels"],
            "mean": meta["mean"],
            "std": meta["std"],
            "hparams": meta["hparams"],
            "study": study_name,
            "trial": chosen.number,
            "epoch": meta["epoch"],
            "metric": meta["metric"],
            "val_metrics": val,
            "test_metrics": test,
            "data": meta["data"],
            "weights_source": meta["weights_source"],
            "versions": meta["versions"],
            "load_with_timm": (f"timm.create_model({meta['model']!r}, pretrained=True, "
                               f"num_classes={meta['num_classes']}, pretrained_cfg_overlay="
                               "{'file': 'weights.safetensors', 'num_classes': "
                               f"{meta['num_classes']}}})"),
        }
        plain = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        safetensors.torch.save_file(plain, str(staging / WEIGHTS_FILE),
                                    metadata={"hpo": json.dumps(config)})
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        ckpt.unlink()
        os.chmod(staging, 0o755)  # mkdtemp makes it private; an export is meant to be shared
        for f in staging.iterdir():
            os.chmod(f, 0o644)
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
        exports = dict(loaded.study.user_attrs.get(ATTR_EXPORTS, {}))
        exports[str(chosen.number)] = {"out": str(out.resolve()), "test_metrics": test}
        loaded.study.set_user_attr(ATTR_EXPORTS, exports)  # shown by `hpo report`
        done = True
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        if not done and not out.exists():
            remove_new_folders(created)
    return ExportResult(out, chosen.number, config)


def preprocess_from(config: dict[str, Any]) -> Preprocess:
    return Preprocess(int(config["image_size"]), int(config["in_chans"]),
                      tuple(config["mean"]), tuple(config["std"]))


def _metrics(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, prep: Preprocess,
             device: torch.device) -> dict[str, float]:
    probs = predict_probs(model, prep.resize(images), prep, device)
    return {k: round(v, 6) for k, v in compute_metrics(probs, labels).items()}
