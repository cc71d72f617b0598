"""The same cases over every backend: embedded journal file, SQLite, real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.artifacts import download_artifact, upload_artifact

from storage import (
    StorageError,
    default_artifact_dir,
    open_artifact_store,
    open_storage,
    parse_storage,
    redact,
    resolve_storage_url,
)

BACKENDS = ["journal", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "journal":
        return str(tmp_path / "studies.journal")
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'studies.db'}"
    return str(request.getfixturevalue("postgres_url"))


def test_study_round_trip_with_intermediate_values(storage_url: str) -> None:
    storage = open_storage(storage_url)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    trial = study.ask()
    trial.report(0.5, 0)
    trial.report(0.7, 1)
    trial.set_user_attr("hpo.best_epoch", 1)
    study.tell(trial, 0.7)
    again = optuna.load_study(study_name="s", storage=open_storage(storage_url))
    t = again.trials[0]
    assert t.value == 0.7 and t.intermediate_values == {0: 0.5, 1: 0.7}
    assert t.user_attrs["hpo.best_epoch"] == 1


def test_artifacts_upload_and_download(storage_url: str, tmp_path: Path) -> None:
    storage = open_storage(storage_url)
    store = open_artifact_store(tmp_path / "artifacts")
    study = optuna.create_study(study_name="a", storage=storage)
    trial = study.ask()
    src = tmp_path / "ckpt.bin"
    src.write_bytes(b"\x00weights\xff")
    artifact_id = upload_artifact(artifact_store=store, file_path=str(src),
                                  study_or_trial=trial)
    dst = tmp_path / "back.bin"
    download_artifact(artifact_store=store, file_path=str(dst), artifact_id=artifact_id)
    assert dst.read_bytes() == src.read_bytes()


def test_url_parsing_and_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_storage("hpo.journal").kind == "journal"
    assert parse_storage("x.db").url == "sqlite:///x.db"
    assert parse_storage("postgres://u:p@h/db").url == "postgresql+psycopg://u:p@h/db"
    assert parse_storage("postgresql://u@h/db").url == "postgresql+psycopg://u@h/db"
    assert resolve_storage_url(None) == "hpo.journal"
    monkeypatch.setenv("HPO_STORAGE", "sqlite:///env.db")
    assert resolve_storage_url(None) == "sqlite:///env.db"
    assert resolve_storage_url("given.journal") == "given.journal"
    assert default_artifact_dir(str(tmp_path / "s.journal")) == tmp_path / "s.journal.artifacts"


def test_passwords_are_never_shown() -> None:
    assert redact("postgresql://me:s3cret@db:5432/hpo") == "postgresql://me:***@db:5432/hpo"
    with pytest.raises(StorageError) as e:
        parse_storage("postgresql+pg8000://me:s3cret@db/hpo")
    assert "s3cret" not in str(e.value) and "pg8000 driver is not supported" in str(e.value)


def test_unknown_scheme_and_missing_folder_are_clear(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="scheme 'mysql' is not supported"):
        parse_storage("mysql://x/y")
    with pytest.raises(StorageError, match="does not exist"):
        open_storage(str(tmp_path / "no" / "such" / "hpo.journal"))


@pytest.mark.postgres
def test_unreachable_server_is_one_clear_line() -> None:
    with pytest.raises(StorageError) as e:
        open_storage("postgresql://me:s3cret@127.0.0.1:1/hpo")
    msg = str(e.value)
    assert "cannot reach the database server" in msg and "s3cret" not in msg
    assert "\n" not in msg
