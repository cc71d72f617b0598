"""Checkpoint artifacts: a directory store next to the study storage (or one the user names)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from optuna.artifacts import FileSystemArtifactStore

from storage.errors import StorageError
from storage.fs import make_folders, nearest_existing, remove_new_folders
from storage.urls import parse_storage

ENV_ARTIFACTS = "HPO_ARTIFACTS"


def default_artifact_dir(storage_url: str) -> Path:
    """Embedded stores keep artifacts beside their file; servers default to ./hpo-artifacts."""
    spec = parse_storage(storage_url)
    if spec.path is not None:
        return spec.path.with_name(spec.path.name + ".artifacts")
    return Path("hpo-artifacts")


def open_artifact_store(directory: str | Path, create: bool = True) -> FileSystemArtifactStore:
    path = Path(os.path.expanduser(str(directory)))
    if not path.exists():
        if not create:
            raise StorageError(f"artifact folder {path} does not exist; pass --artifacts with the "
                               "folder the study's workers wrote checkpoints to")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"cannot create artifact folder {path} ({e.strerror}); "
                               "pass --artifacts DIR on a writable disk") from e
    elif not path.is_dir():
        raise StorageError(f"artifact location {path} is a file; pass a folder")
    return FileSystemArtifactStore(str(path))


def check_artifact_dir(directory: str | Path) -> None:
    """Fail now, before a study is written, if checkpoints cannot be stored in ``directory``
    (a file in the way, a read-only or virtual file system). Leaves nothing behind: folders
    made for the probe are removed again."""
    path = Path(os.path.expanduser(str(directory))).absolute()
    above = nearest_existing(path)
    if not above.is_dir():
        raise StorageError(f"artifact location {above} is a file; pass --artifacts with a "
                           "folder")
    made: list[Path] = []
    try:
        made = make_folders(path)
        fd, probe = tempfile.mkstemp(prefix=".hpo-write-check-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise StorageError(f"cannot write checkpoints to {path} ({e.strerror or e}); pass "
                           "--artifacts DIR on a writable disk") from e
    finally:
        remove_new_folders(made)
