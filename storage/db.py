"""``hpo db check`` / ``hpo db upgrade``: is the study database reachable, and is its schema the
one this Optuna expects?"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
import sqlalchemy.exc
from optuna.storages import RDBStorage

from storage.errors import StorageError
from storage.open import _explain_db_error, open_storage
from storage.postgres import engine_kwargs
from storage.urls import parse_storage


@dataclass(frozen=True)
class DbStatus:
    location: str
    kind: str
    schema: str  # "current", "older", "newer" or "n/a" (journal files have no schema)
    schema_version: str | None
    expected_version: str | None
    studies: int | None
    trials: int | None

    @property
    def ok(self) -> bool:
        return self.schema in ("current", "n/a")

    def advice(self, url: str) -> str:
        if self.schema == "older":
            return f"run `hpo db upgrade --storage {url}` (back up the database first)"
        if self.schema == "newer":
            return (f"this database was upgraded by a newer Optuna (schema "
                    f"{self.schema_version}); upgrade optuna and hpo on this machine")
        return "ok"


def _rdb(url: str) -> RDBStorage:
    spec = parse_storage(url)
    kwargs = engine_kwargs() if spec.kind == "postgresql" else {}
    try:
        return RDBStorage(spec.url, engine_kwargs=kwargs, skip_compatibility_check=True,
                          skip_table_creation=True)
    except ImportError as e:
        raise StorageError(f"{spec.display}: database driver missing ({e})") from e
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as e:
        raise _explain_db_error(spec, e) from e


def _counts(url: str) -> tuple[int, int]:
    summaries = optuna.get_all_study_summaries(open_storage(url), include_best_trial=False)
    return len(summaries), sum(s.n_trials for s in summaries)


def check_db(url: str) -> DbStatus:
    spec = parse_storage(url)
    if spec.kind == "journal":
        studies, trials = _counts(url) if spec.path is not None and spec.path.exists() else (0, 0)
        return DbStatus(spec.display, "journal file", "n/a", None, None, studies, trials)
    storage = _rdb(url)
    try:
        try:
            current: str | None = storage.get_current_version()
        except AssertionError:  # an empty database: Optuna will create the schema on first use
            current = None
        head = storage.get_head_version()
        known = storage.get_all_versions()
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as e:
        raise _explain_db_error(spec, e) from e
    finally:
        storage.engine.dispose()
    if current is None or current == head:
        schema = "current"
    elif current in known:
        schema = "older"
    else:
        schema = "newer"
    if schema == "current":
        studies, trials = _counts(url)
        return DbStatus(spec.display, spec.kind, schema, current, head, studies, trials)
    return DbStatus(spec.display, spec.kind, schema, current, head, None, None)


def upgrade_db(url: str) -> DbStatus:
    """Run Optuna's schema migration (``optuna storage upgrade``) and report the result."""
    spec = parse_storage(url)
    if spec.kind == "journal":
        return check_db(url)
    before = check_db(url)
    if before.schema == "newer":
        raise StorageError(f"{spec.display}: {before.advice(url)}")
    storage = _rdb(url)
    try:
        storage.upgrade()
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as e:
        raise _explain_db_error(spec, e) from e
    finally:
        storage.engine.dispose()
    return check_db(url)
