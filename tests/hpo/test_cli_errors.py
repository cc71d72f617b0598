"""Bad input: one ``Error:`` line naming the input and the fix, exit code 2, nothing created."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner, Result

from hpo.cli import main
from storage import open_storage


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _assert_error(result: Result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, result.output
    for n in needles:
        assert n in lines[0], lines[0]
    assert "Traceback" not in result.output


def _no_studies(storage: Path) -> None:
    if storage.exists():
        assert optuna.get_all_study_summaries(open_storage(str(storage))) == []


def test_missing_data_file(tmp_path: Path) -> None:
    storage = tmp_path / "s.journal"
    r = _run("study", "create", "s", "--data", str(tmp_path / "nope.npz"), "--model",
             "test_resnet", "--weights", "none", "--storage", str(storage))
    _assert_error(r, "nope.npz", "check the path")
    _no_studies(storage)


def test_unknown_model_name(tmp_path: Path, breast_npz: Path) -> None:
    storage = tmp_path / "s.journal"
    r = _run("run", "--data", str(breast_npz), "--model", "resnet_nope", "--storage",
             str(storage))
    _assert_error(r, "unknown timm model 'resnet_nope'")
    _no_studies(storage)


def test_out_of_range_freeze_depth(tmp_path: Path, breast_npz: Path) -> None:
    storage = tmp_path / "s.journal"
    r = _run("study", "create", "s", "--allow-data-issues", "--data", str(breast_npz),
             "--model", "test_resnet",
             "--weights", "none", "--freeze-depth", "0..7", "--storage", str(storage))
    _assert_error(r, "freeze_depth must be between 0 and 5 for test_resnet, but got 7")
    _no_studies(storage)


def test_unknown_study(tmp_path: Path, breast_npz: Path) -> None:
    storage = tmp_path / "s.journal"
    created = _run("study", "create", "real", "--allow-data-issues", "--data",
                   str(breast_npz), "--model",
                   "test_resnet", "--weights", "none", "--storage", str(storage))
    assert created.exit_code == 0, created.output
    for cmd in (["worker"], ["export", "--out", str(tmp_path / "x")]):
        r = _run(*cmd, "--storage", str(storage), "--study", "nope")
        _assert_error(r, "study 'nope' not found", "studies there: real")
    r = _run("study", "show", "nope", "--storage", str(storage))
    _assert_error(r, "study 'nope' not found")


def test_duplicate_study_and_env_storage(tmp_path: Path, breast_npz: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPO_STORAGE", str(tmp_path / "env.journal"))
    args = ["study", "create", "dup", "--allow-data-issues", "--data", str(breast_npz),
            "--model", "test_resnet",
            "--weights", "none"]
    assert _run(*args).exit_code == 0
    _assert_error(_run(*args), "study 'dup' already exists")
    listed = _run("study", "list")
    assert listed.exit_code == 0 and listed.output.startswith("dup\t")


def test_missing_weights_file_and_bad_ranges(tmp_path: Path, breast_npz: Path) -> None:
    base = ["study", "create", "s", "--allow-data-issues", "--data", str(breast_npz),
            "--model", "test_resnet",
            "--storage", str(tmp_path / "s.journal")]
    _assert_error(_run(*base, "--weights", str(tmp_path / "w.safetensors")),
                  "w.safetensors does not exist")
    _assert_error(_run(*base, "--weights", "none", "--lr", "fast"), "LOW..HIGH")
    _assert_error(_run(*base, "--weights", "none", "--aug", "0..2"), "aug_strength range")
    _assert_error(_run(*base, "--weights", "none", "--metric", "f1"), "metric must be one of")


def test_bad_storage_urls(tmp_path: Path) -> None:
    _assert_error(_run("study", "list", "--storage", "postgresql+pg8000://u:pw@h/db"),
                  "pg8000 driver is not supported")
    _assert_error(_run("study", "list", "--storage", "mysql://h/db"), "not supported")


def test_export_and_predict_refuse_bad_folders(tmp_path: Path, breast_npz: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    r = _run("export", "--storage", str(tmp_path / "s.journal"), "--study", "x", "--out",
             str(busy))
    _assert_error(r, "already exists and is not empty")
    assert (busy / "keep.txt").read_text() == "mine"
    _assert_error(_run("predict", str(tmp_path), str(breast_npz)), "is not an hpo export")
