"""Bad input: one ``Error:`` line naming the input and the fix, exit code 2, nothing created."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from storage import open_storage
from tests.cli import assert_error, run_cli


def _no_studies(storage: Path) -> None:
    if storage.exists():
        assert optuna.get_all_study_summaries(open_storage(str(storage))) == []


def test_missing_data_file(tmp_path: Path) -> None:
    storage = tmp_path / "s.journal"
    r = run_cli("study", "create", "s", "--data", str(tmp_path / "nope.npz"), "--model",
             "test_resnet", "--weights", "none", "--storage", str(storage))
    assert_error(r, "nope.npz", "check the path")
    _no_studies(storage)


def test_unknown_model_name(tmp_path: Path, breast_npz: Path) -> None:
    storage = tmp_path / "s.journal"
    r = run_cli("run", "--data", str(breast_npz), "--model", "resnet_nope", "--storage",
             str(storage))
    assert_error(r, "unknown timm model 'resnet_nope'")
    _no_studies(storage)


def test_out_of_range_freeze_depth(tmp_path: Path, breast_npz: Path) -> None:
    storage = tmp_path / "s.journal"
    r = run_cli("study", "create", "s", "--allow-data-issues", "--data", str(breast_npz),
             "--model", "test_resnet",
             "--weights", "none", "--freeze-depth", "0..7", "--storage", str(storage))
    assert_error(r, "freeze_depth must be between 0 and 5 for test_resnet, but got 7")
    _no_studies(storage)


def test_unknown_study(tmp_path: Path, breast_npz: Path) -> None:
    storage = tmp_path / "s.journal"
    created = run_cli("study", "create", "real", "--allow-data-issues", "--data",
                   str(breast_npz), "--model",
                   "test_resnet", "--weights", "none", "--storage", str(storage))
    assert created.exit_code == 0, created.output
    for cmd in (["worker"], ["export", "--out", str(tmp_path / "x")]):
        r = run_cli(*cmd, "--storage", str(storage), "--study", "nope")
        assert_error(r, "study 'nope' not found", "studies there: real")
    r = run_cli("study", "show", "nope", "--storage", str(storage))
    assert_error(r, "study 'nope' not found")


def test_duplicate_study_and_env_storage(tmp_path: Path, breast_npz: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPO_STORAGE", str(tmp_path / "env.journal"))
    args = ["study", "create", "dup", "--allow-data-issues", "--data", str(breast_npz),
            "--model", "test_resnet",
            "--weights", "none"]
    assert run_cli(*args).exit_code == 0
    assert_error(run_cli(*args), "study 'dup' already exists")
    listed = run_cli("study", "list")
    assert listed.exit_code == 0 and listed.output.startswith("dup\t")


def test_missing_weights_file_and_bad_ranges(tmp_path: Path, breast_npz: Path) -> None:
    base = ["study", "create", "s", "--allow-data-issues", "--data", str(breast_npz),
            "--model", "test_resnet",
            "--storage", str(tmp_path / "s.journal")]
    assert_error(run_cli(*base, "--weights", str(tmp_path / "w.safetensors")),
                  "w.safetensors does not exist")
    assert_error(run_cli(*base, "--weights", "none", "--lr", "fast"), "LOW..HIGH")
    assert_error(run_cli(*base, "--weights", "none", "--aug", "0..2"), "aug_strength range")
    assert_error(run_cli(*base, "--weights", "none", "--metric", "f1"), "metric must be one of")


def test_bad_storage_urls(tmp_path: Path) -> None:
    assert_error(run_cli("study", "list", "--storage", "postgresql+pg8000://u:pw@h/db"),
                  "pg8000 driver is not supported")
    assert_error(run_cli("study", "list", "--storage", "mysql://h/db"), "not supported")


def test_export_and_predict_refuse_bad_folders(tmp_path: Path, breast_npz: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    r = run_cli("export", "--storage", str(tmp_path / "s.journal"), "--study", "x", "--out",
             str(busy))
    assert_error(r, "already exists and is not empty")
    assert (busy / "keep.txt").read_text() == "mine"
    assert_error(run_cli("predict", str(tmp_path), str(breast_npz)), "is not an hpo export")


def test_weights_are_checked_before_the_study_exists(tmp_path: Path, breast_npz: Path,
                                                     weights_dir: Path) -> None:
    storage = tmp_path / "s.journal"
    base = ["study", "create", "w", "--allow-data-issues", "--data", str(breast_npz),
            "--storage", str(storage)]
    fake = tmp_path / "fake.safetensors"
    fake.write_text("not weights")
    assert_error(run_cli(*base, "--model", "test_resnet", "--weights", str(fake)),
                  "cannot read weights file")
    assert_error(run_cli(*base, "--model", "mobilenetv2_100", "--weights",
                       str(weights_dir / "tf_efficientnet_lite0.in1k.safetensors")),
                  "does not fit model mobilenetv2_100", "size mismatch")
    assert_error(run_cli(*base, "--model", "test_resnet"), "model hub", "--weights")  # offline
    assert_error(run_cli(*base, "--model", "test_resnet", "--weights", str(weights_dir)),
                  "is a folder", "HPO_WEIGHTS_DIR")
    assert not storage.exists()  # nothing was created, not even the storage file


def test_read_only_commands_create_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    monkeypatch.chdir(tmp_path)
    for args in (["study", "list"], ["study", "show", "x"], ["worker", "--study", "x"],
                 ["export", "--study", "x", "--out", "e"], ["report", "--study", "x"]):
        assert_error(run_cli(*args), "hpo.journal does not exist")
    assert list(tmp_path.iterdir()) == []


def test_foreign_files_as_storage_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.journal"
    bad.write_text("garbage\n")
    assert_error(run_cli("study", "list", "--storage", str(bad)), "not an Optuna journal file")
    assert bad.read_text() == "garbage\n"
    db = tmp_path / "bad.db"
    db.write_text("garbage" * 100)
    assert_error(run_cli("study", "list", "--storage", f"sqlite:///{db}"), "not an SQLite")
    assert_error(run_cli("study", "list", "--storage", "postgresql://u:pw@127.0.0.1:nope/db"),
                  "malformed storage URL")
    line = [ln for ln in run_cli("study", "list", "--storage",
                              "postgresql://u@127.0.0.1:1/db?password=hunter2").output
            .splitlines() if ln.startswith("Error:")][0]
    assert "hunter2" not in line and "password=***" in line


def test_bad_npz_contents(tmp_path: Path) -> None:
    import numpy as np

    base = ["data", "check"]
    text = tmp_path / "text.npz"
    text.write_text("hello")
    assert_error(run_cli(*base, str(text)), "not a .npz file")
    np.savez(tmp_path / "empty.npz", train_images=np.zeros((0, 8, 8), np.uint8),
             train_labels=np.zeros((0,), np.uint8), val_images=np.zeros((0, 8, 8), np.uint8),
             val_labels=np.zeros((0,), np.uint8))
    assert_error(run_cli(*base, str(tmp_path / "empty.npz")), "train split has no images")
    rng = np.random.default_rng(0)
    images = rng.random((12, 8, 8))
    np.savez(tmp_path / "unseen.npz", train_images=images, train_labels=np.array([0, 1] * 6),
             val_images=images[:3], val_labels=np.array([0, 1, 2]))
    assert_error(run_cli(*base, str(tmp_path / "unseen.npz")),
                  "class 2 appears in val but never in train")


def test_float_images_in_unit_range_are_scaled(tmp_path: Path) -> None:
    import numpy as np

    from trainers import load_npz

    images = np.random.default_rng(0).random((6, 8, 8))
    np.savez(tmp_path / "f.npz", train_images=images, train_labels=np.array([0, 1] * 3),
             val_images=images, val_labels=np.array([0, 1] * 3))
    ds = load_npz(tmp_path / "f.npz")
    assert int(ds.train.images.max()) > 200  # not truncated to zeros
    assert int(ds.train.images[0, 0, 0, 0]) == round(images[0, 0, 0] * 255)


def test_study_names_must_be_real(tmp_path: Path, breast_npz: Path) -> None:
    assert_error(run_cli("study", "create", " ", "--allow-data-issues", "--data", str(breast_npz),
                       "--model", "test_resnet", "--weights", "none", "--storage",
                       str(tmp_path / "s.journal")), "study name")
    for bad in ("a/b", "..", "x\\y"):
        r = run_cli("study", "create", bad, "--allow-data-issues", "--data", str(breast_npz),
                    "--model", "test_resnet", "--weights", "none", "--storage",
                    str(tmp_path / "s.journal"))
        assert_error(r, "would be a path")
    r = run_cli("run", "--study", "", "--data", str(breast_npz), "--model", "test_resnet",
                "--weights", "none", "--storage", str(tmp_path / "s.journal"))
    assert_error(r, "study name '' is empty")
    _no_studies(tmp_path / "s.journal")


def _study_args(breast_npz: Path, storage: Path) -> list[str]:
    return ["--allow-data-issues", "--data", str(breast_npz), "--model", "test_resnet",
            "--weights", "none", "--image-size", "28", "--storage", str(storage)]


def test_unusable_artifact_folder_is_refused_before_the_study_exists(
        tmp_path: Path, breast_npz: Path) -> None:
    storage = tmp_path / "s.journal"
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    for artifacts in (afile, afile / "sub", Path("/proc/hpo-artifacts")):
        r = run_cli("run", *_study_args(breast_npz, storage), "--trials", "1", "--epochs", "1",
                    "--artifacts", str(artifacts))
        assert_error(r, "artifact")
        _no_studies(storage)
    assert not Path("/proc/hpo-artifacts").exists()
    fresh = tmp_path / "new" / "deeper"
    r = run_cli("study", "create", "ok", *_study_args(breast_npz, storage),
                "--artifacts", str(fresh))
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "new").exists()  # the write probe leaves nothing behind
    # resuming with another checkpoint folder would silently split the study's checkpoints
    r = run_cli("run", "--study", "ok", *_study_args(breast_npz, storage),
                "--artifacts", str(tmp_path / "elsewhere"))
    assert_error(r, "keeps its checkpoints in", str(fresh))


def test_unwritable_outputs_and_bad_devices(tmp_path: Path, breast_npz: Path) -> None:
    storage = tmp_path / "s.journal"
    done = run_cli("run", "--study", "s", *_study_args(breast_npz, storage), "--trials", "1",
                   "--epochs", "1")
    assert done.exit_code == 0, done.output  # one trained trial: export gets to writing
    afile = tmp_path / "afile"
    afile.write_text("mine")
    for out in (afile / "sub", Path("/proc/hpo-export")):
        assert_error(run_cli("export", "--storage", str(storage), "--study", "s", "--out",
                             str(out)), "--out")
        assert_error(run_cli("report", "--storage", str(storage), "--study", "s", "--out",
                             str(out) + ".html"), "--out")
    assert_error(run_cli("report", "--storage", str(storage), "--study", "s", "--out",
                         str(afile)), "is not an hpo report")
    assert afile.read_text() == "mine"
    report = tmp_path / "r.html"
    for _ in range(2):  # a report it wrote itself may be replaced
        r = run_cli("report", "--storage", str(storage), "--study", "s", "--out", str(report))
        assert r.exit_code == 0, r.output
    assert_error(run_cli("export", "--storage", str(storage), "--study", "s", "--out",
                         str(tmp_path / "n" / "x"), "--trial", "99"), "trial 99")
    assert not (tmp_path / "n").exists()  # parents made for a failed export are removed
    for cmd in (["worker", "--storage", str(storage), "--study", "s", "--trials", "1"],
                ["predict", str(tmp_path), str(breast_npz)],
                ["export", "--storage", str(storage), "--study", "s", "--out",
                 str(tmp_path / "e")]):
        assert_error(run_cli(*cmd, "--device", "foo"), "--device 'foo'")


def test_click_usage_errors_are_one_line() -> None:
    assert_error(run_cli("run", "--data", "x", "--model", "y", "--lr", "abc"), "--lr",
                 "run --help")
    assert_error(run_cli("worker", "--study", "s", "--threads", "0"), "--threads")
    assert_error(run_cli("study", "nope"), "No such command")
    assert_error(run_cli("run"), "Missing option '--data'")
