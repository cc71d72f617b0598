"""A short real study end to end: two worker processes on the embedded store, pruning, export,
and predictions that round-trip through the exported folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
import safetensors.torch
import timm
import torch
from click.testing import CliRunner
from optuna.artifacts import download_artifact
from optuna.trial import TrialState

from hpo.cli import main
from hpo.predict import load_exported, predict
from storage import open_artifact_store, open_storage
from trainers import Preprocess, load_npz, predict_probs
from trainers.checkpoint import load_checkpoint, rebuild_model

pytestmark = pytest.mark.slow
BUDGET = 10


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory: pytest.TempPathFactory, breast_npz: Path) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("run")
    storage = str(tmp / "hpo.journal")
    out = tmp / "export"
    result = CliRunner().invoke(main, [
        "run", "--allow-data-issues", "--data", str(breast_npz), "--model", "test_resnet",
        "--weights", "none",
        "--trials", str(BUDGET), "--epochs", "4", "--workers", "2", "--pruner", "sha",
        "--metric", "auroc", "--image-size", "28", "--batch-size", "64",
        "--storage", storage, "--study", "e2e", "--out", str(out), "--device", "cpu",
    ])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="e2e", storage=open_storage(storage))
    return {"storage": storage, "out": out, "study": study, "output": result.output,
            "artifacts": Path(storage + ".artifacts")}


def test_budget_is_spent_exactly_and_some_trials_are_pruned(finished_study: dict) -> None:
    trials = finished_study["study"].trials
    states = [t.state for t in trials]
    finished = [s for s in states if s in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == BUDGET
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    assert TrialState.RUNNING not in states
    for t in trials:
        assert t.state != TrialState.FAIL or t.user_attrs.get("hpo.reason")
        if t.state == TrialState.PRUNED:
            assert t.user_attrs["hpo.reason"].startswith("pruned after epoch")
            assert len(t.intermediate_values) < 4
        if t.state == TrialState.COMPLETE:
            assert set(t.params) == {"lr", "freeze_depth", "aug_strength", "image_size"}
            assert t.user_attrs["hpo.images_per_s"] > 0
            assert t.user_attrs["hpo.compute"] in ("fp32", "fp32+channels_last", "bf16",
                                                   "bf16+channels_last")  # measured: auto
            assert t.user_attrs["hpo.val_metrics"]["auroc"] == pytest.approx(t.value)
    assert trials[0].params["lr"] == 1e-3  # the enqueued default configuration ran first
    assert "Best trial" in finished_study["output"]


def test_export_describes_the_model_and_reports_test_metrics(finished_study: dict) -> None:
    out: Path = finished_study["out"]
    config = json.loads((out / "config.json").read_text())
    best = finished_study["study"].best_trial
    assert config["trial"] == best.number and config["architecture"] == "test_resnet"
    assert config["classes"] == ["malignant", "normal, benign"]
    assert config["image_size"] == 28 and config["data_channels"] == 1
    assert set(config["test_metrics"]) == {"accuracy", "balanced_accuracy", "auroc"}
    # the exported model gives the same validation predictions as it did in the study
    recorded = best.user_attrs["hpo.val_metrics"]
    assert config["val_metrics"]["accuracy"] == pytest.approx(recorded["accuracy"], abs=1e-6)
    assert config["val_metrics"]["auroc"] == pytest.approx(recorded["auroc"], abs=1e-4)
    assert "test accuracy" in finished_study["output"]


def test_predict_round_trip_is_identical(finished_study: dict, breast_npz: Path,
                                         tmp_path: Path) -> None:
    out: Path = finished_study["out"]
    best = finished_study["study"].best_trial
    store = open_artifact_store(finished_study["artifacts"], create=False)
    ckpt = tmp_path / "ckpt.safetensors"
    download_artifact(artifact_store=store, file_path=str(ckpt),
                      artifact_id=best.user_attrs["hpo.checkpoint"])
    state, meta = load_checkpoint(ckpt)
    in_study = rebuild_model(state, meta)
    prep = Preprocess(meta["image_size"], meta["in_chans"], tuple(meta["mean"]),
                      tuple(meta["std"]))
    test = load_npz(breast_npz).test
    assert test is not None
    expected = predict_probs(in_study, prep.resize(test.images), prep, torch.device("cpu"))

    got = predict(out, [str(breast_npz)])
    assert torch.allclose(got.probs, expected, atol=1e-6)
    assert torch.equal(got.probs.argmax(1), expected.argmax(1))

    result = CliRunner().invoke(main, ["predict", str(out), str(breast_npz), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == len(test)
    assert [r["class"] for r in rows] == got.predicted


def test_export_loads_with_plain_timm(finished_study: dict, breast_npz: Path) -> None:
    out: Path = finished_study["out"]
    config = json.loads((out / "config.json").read_text())
    plain = timm.create_model(config["architecture"], pretrained=True,
                              num_classes=config["num_classes"],
                              pretrained_cfg_overlay={"file": str(out / "weights.safetensors"),
                                                      "num_classes": config["num_classes"]})
    ours, _ = load_exported(out)
    x = torch.randn(4, 3, 28, 28)
    with torch.no_grad():
        assert torch.allclose(plain.eval()(x), ours.eval()(x), atol=1e-6)
    assert safetensors.torch.load_file(str(out / "weights.safetensors"))  # no pickle involved
    assert "'num_classes': 2" in config["load_with_timm"]


def test_rerunning_resumes_without_new_trials(finished_study: dict, breast_npz: Path) -> None:
    result = CliRunner().invoke(main, [
        "run", "--allow-data-issues", "--data", str(breast_npz), "--model", "test_resnet",
        "--weights", "none",
        "--trials", str(BUDGET), "--epochs", "4", "--pruner", "sha", "--metric", "auroc",
        "--image-size", "28", "--batch-size", "64", "--storage", finished_study["storage"],
        "--study", "e2e", "--device", "cpu",
    ])
    assert result.exit_code == 0, result.output
    assert "Resuming" in result.output
    study = optuna.load_study(study_name="e2e", storage=open_storage(finished_study["storage"]))
    assert len(study.trials) == len(finished_study["study"].trials)



def test_predict_on_image_files_does_not_depend_on_the_other_inputs(
        finished_study: dict, breast_npz: Path, tmp_path: Path) -> None:
    from PIL import Image

    test = load_npz(breast_npz).test
    assert test is not None
    small = tmp_path / "small.png"
    big = tmp_path / "big.png"
    Image.fromarray(test.images[0, 0].numpy()).save(small)
    Image.fromarray(test.images[1, 0].numpy()).resize((112, 112)).save(big)
    alone = predict(finished_study["out"], [str(big)]).probs
    together = predict(finished_study["out"], [str(small), str(small), str(big)]).probs
    assert torch.allclose(alone[0], together[2], atol=1e-6)
