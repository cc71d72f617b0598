"""Storage URLs: what the user types, what Optuna gets, and what is safe to print."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from storage.errors import StorageError

DEFAULT_STORAGE = "hpo.journal"
ENV_STORAGE = "HPO_STORAGE"
JOURNAL_SUFFIXES = (".journal", ".log", ".jsonl")
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


@dataclass(frozen=True)
class StorageSpec:
    """A parsed storage location."""

    kind: str  # "journal" | "sqlite" | "postgresql"
    url: str  # what Optuna / SQLAlchemy gets (journal: the file path)
    path: Path | None = None  # the file, for embedded stores
    given: str = ""  # as the user wrote it

    @property
    def display(self) -> str:
        return redact(self.given or (self.url if self.path is None else str(self.path)))


_PASSWORD = re.compile(r"(://[^:/@]+:)([^@]*)(@)")
_PASSWORD_PARAM = re.compile(r"((?:^|[?&;])password=)([^&;]*)", re.IGNORECASE)


def redact(url: str) -> str:
    """Hide the password in ``scheme://user:password@host`` and in ``?password=...``."""
    return _PASSWORD_PARAM.sub(r"\1***", _PASSWORD.sub(r"\1***\3", url))


def resolve_storage_url(url: str | None) -> str:
    """``--storage``, else ``HPO_STORAGE``, else the embedded file in the working directory."""
    return url or os.environ.get(ENV_STORAGE) or DEFAULT_STORAGE


def parse_storage(url: str) -> StorageSpec:
    spec = _parse(url)
    return replace(spec, given=url)


def _parse(url: str) -> StorageSpec:
    if url.startswith(("postgresql+pg8000", "postgres+pg8000")):
        raise StorageError(
            f"{redact(url)}: the pg8000 driver is not supported; use postgresql://... "
            "(psycopg 3, installed with hpo)"
        )
    if url.startswith(("postgresql+psycopg2://", "postgresql+psycopg://")):
        return StorageSpec("postgresql", url)
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):  # psycopg 3, installed with hpo (SQLAlchemy's default varies)
            return StorageSpec("postgresql", "postgresql+psycopg://" + url[len(scheme):])
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        return StorageSpec("sqlite", url, path)
    if url.startswith("journal:///"):
        return StorageSpec("journal", url, Path(url[len("journal:///"):]))
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise StorageError(
            f"storage URL scheme {scheme!r} is not supported; use postgresql://user@host/db, "
            "sqlite:///file.db, or a journal file path such as hpo.journal"
        )
    path = Path(url).expanduser()
    if path.suffix in SQLITE_SUFFIXES:
        return StorageSpec("sqlite", f"sqlite:///{path}", path)
    if path.is_dir():
        raise StorageError(f"storage {url} is a folder; pass a file such as {path}/hpo.journal")
    return StorageSpec("journal", str(path), path)
