"""Open an Optuna storage from a URL with settings fit for several worker processes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import optuna
import sqlalchemy.exc
from optuna.storages import (
    BaseStorage,
    JournalStorage,
    RDBStorage,
    RetryHeartbeatStaleTrialCallback,
)
from optuna.storages.journal import JournalFileBackend

from storage.errors import StorageError
from storage.postgres import engine_kwargs
from storage.urls import StorageSpec, parse_storage, redact

log = logging.getLogger(__name__)


def _explain_db_error(spec: StorageSpec, e: BaseException) -> StorageError:
    root: BaseException = e
    while root.__cause__ is not None:  # Optuna wraps driver errors; the driver's text helps
        root = root.__cause__
    text = str(getattr(root, "orig", None) or root).strip().splitlines()
    first = text[0] if text else type(e).__name__
    where = spec.display
    low = first.lower()
    if "password authentication failed" in low:
        msg = f"{where}: password authentication failed; check the user and password"
    elif "does not exist" in low and "database" in low:
        msg = f"{where}: {redact(first)}; create it (createdb) or fix the database name"
    elif "could not connect" in low or "connection refused" in low or "timeout" in low \
            or "could not translate host" in low:
        msg = f"{where}: cannot reach the database server ({redact(first)}); check host and port"
    elif "file is not a database" in low:
        msg = f"{where} is not an SQLite database; pass the right --storage file"
    elif "unable to open database file" in low:
        msg = f"{where}: cannot open the SQLite file; check that its folder exists and is writable"
    elif "no longer compatible" in low and "storage upgrade" in low:
        msg = (f"{where}: the database schema is older than this Optuna "
               f"({optuna.__version__}) expects; run `hpo db upgrade --storage URL`")
    elif "no longer compatible" in low:
        msg = (f"{where}: the database schema was written by a newer Optuna than "
               f"{optuna.__version__}; upgrade optuna and hpo on this machine")
    else:
        msg = f"{where}: {redact(first)}"
    return StorageError(msg)


def retry_callback(max_retry: int) -> RetryHeartbeatStaleTrialCallback:
    """Optuna's own retry: a WAITING copy of the failed trial with the same hyperparameters
    and ``failed_trial``/``retry_history`` system attrs (intermediate values are re-reported by
    the resumed run itself)."""
    return RetryHeartbeatStaleTrialCallback(max_retry=max_retry)


def enable_heartbeat(storage: BaseStorage, interval: int, grace_period: int,
                     max_retry: int) -> bool:
    """Turn on heartbeats and stale-trial retry on an open database storage, reusing its
    connection pool (a worker reads the study's settings before it knows them). Returns False
    for stores without heartbeat support (journal files)."""
    backend = getattr(storage, "_backend", storage)  # Optuna wraps RDBStorage in a cache
    if not isinstance(backend, RDBStorage):
        return False
    backend.heartbeat_interval = interval
    backend.grace_period = grace_period
    backend.heartbeat_stale_trial_callback = retry_callback(max_retry) if max_retry else None
    backend.failed_trial_callback = backend.heartbeat_stale_trial_callback
    return True


def _check_journal(path: Path) -> None:
    """Refuse a file that is not an Optuna journal before appending records to it."""
    with open(path, "rb") as f:
        first = f.readline(1 << 20)
    if not first.strip():
        return
    try:
        record = json.loads(first)
    except ValueError:
        record = None
    if not isinstance(record, dict) or "op_code" not in record:
        raise StorageError(f"{path} is not an Optuna journal file; pass the right --storage "
                           "file (or a new file name to start one)")


def open_storage(url: str, heartbeat_interval: int | None = None,
                 grace_period: int | None = None, max_retry: int | None = None,
                 create: bool = True) -> BaseStorage:
    """Open ``url`` (postgresql://, sqlite:///, or a journal file path) as an Optuna storage.

    With ``heartbeat_interval`` (database stores only), running trials send heartbeats and a
    trial silent for ``grace_period`` seconds is failed by the next worker that looks, then
    retried up to ``max_retry`` times.
    """
    spec = parse_storage(url)
    if spec.path is not None and not create and not spec.path.exists():
        raise StorageError(f"storage {spec.path} does not exist; create a study first (`hpo run`"
                           " or `hpo study create`) or pass --storage / HPO_STORAGE")
    try:
        if spec.kind == "journal":
            assert spec.path is not None
            parent = spec.path.parent
            if parent.exists() and not parent.is_dir():
                raise StorageError(f"{parent} is a file, not a folder, so storage {spec.path} "
                                   "cannot be there; pass another --storage path")
            if not parent.exists() and str(parent) not in ("", "."):
                raise StorageError(f"folder {parent} for storage {spec.path} does not "
                                   "exist; create it or pass another path")
            if spec.path.is_file():
                _check_journal(spec.path)
            return JournalStorage(JournalFileBackend(str(spec.path)))
        kwargs = engine_kwargs() if spec.kind == "postgresql" else {
            "connect_args": {"timeout": 60}}  # SQLite: wait for other writers, don't fail
        callback = retry_callback(max_retry) if heartbeat_interval and max_retry else None
        return RDBStorage(spec.url, engine_kwargs=kwargs, heartbeat_interval=heartbeat_interval,
                          grace_period=grace_period, heartbeat_stale_trial_callback=callback)
    except StorageError:
        raise
    except ImportError as e:
        raise StorageError(f"{spec.display}: the database driver is not installed ({e}); "
                           "install hpo's dependencies (pip install -e .) or use "
                           "postgresql:// URLs") from e
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError,
            RuntimeError, OSError) as e:
        raise _explain_db_error(spec, e) from e
    except ValueError as e:  # e.g. a non-numeric port in the URL
        raise StorageError(f"{spec.display}: malformed storage URL ({e}); use "
                           "postgresql://user:password@host:5432/database") from e
