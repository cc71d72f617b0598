"""`hpo db check|upgrade` and the storage errors users meet, against a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from click.testing import Result
from optuna.storages import RDBStorage

from storage import parse_storage
from tests.cli import assert_error, run_cli
from tests.pg import PASSWORD, PostgresServer

pytestmark = pytest.mark.postgres


def _error(r: Result, *needles: str) -> str:
    return assert_error(r, *needles, secret=PASSWORD)


def test_check_reports_schema_and_counts(postgres_url: str) -> None:
    study = optuna.create_study(study_name="s", storage=postgres_url.replace(
        "postgresql://", "postgresql+psycopg://"))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    r = run_cli("db", "check", "--storage", postgres_url)
    assert r.exit_code == 0, r.output
    assert "schema: current" in r.output and "studies: 1, trials: 3" in r.output
    assert PASSWORD not in r.output and "***" in r.output


def test_unreachable_host(postgres_server: PostgresServer) -> None:
    url = f"postgresql://hpo:{PASSWORD}@127.0.0.1:1/hpo"
    _error(run_cli("db", "check", "--storage", url), "cannot reach the database server")
    _error(run_cli("study", "list", "--storage", url), "cannot reach the database server")


def test_wrong_password(postgres_server: PostgresServer) -> None:
    url = postgres_server.url("postgres").replace(PASSWORD, "not-the-password")
    line = _error(run_cli("db", "check", "--storage", url), "password authentication failed")
    assert "not-the-password" not in line


def test_missing_database(postgres_server: PostgresServer) -> None:
    url = postgres_server.url("no_such_db")
    _error(run_cli("db", "check", "--storage", url), "no_such_db", "does not exist", "createdb")


def test_pg8000_is_refused_with_the_driver_to_use() -> None:
    _error(run_cli("db", "check", "--storage", f"postgresql+pg8000://hpo:{PASSWORD}@h/db"),
           "pg8000 driver is not supported", "postgresql://")


def _rdb(url: str) -> RDBStorage:
    return RDBStorage(parse_storage(url).url, skip_compatibility_check=True)


def test_older_schema_is_found_and_upgraded(postgres_url: str) -> None:
    storage = _rdb(postgres_url)
    head, previous = storage.get_all_versions()[:2]  # newest first
    assert head == "v3.2.0.a"  # its migration adds the index on trials.study_id
    # A genuinely older schema: the state before that migration (Optuna's own downgrade
    # script names the index differently from the one its models create).
    with storage.engine.begin() as conn:
        for (index,) in conn.exec_driver_sql(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'trials' "
                "AND indexdef LIKE '%%(study_id)%%'").fetchall():
            conn.exec_driver_sql(f'DROP INDEX "{index}"')
        conn.exec_driver_sql(f"UPDATE alembic_version SET version_num = '{previous}'")
    storage.engine.dispose()
    _error(run_cli("db", "check", "--storage", postgres_url), "hpo db upgrade --storage")
    _error(run_cli("study", "list", "--storage", postgres_url), "older than this Optuna",
           "hpo db upgrade")
    r = run_cli("db", "upgrade", "--storage", postgres_url)
    assert r.exit_code == 0, r.output
    assert "schema is current" in r.output
    assert _study_id_indexes(postgres_url) == ["trials_study_id_key"]  # the migration ran
    assert run_cli("study", "list", "--storage", postgres_url).exit_code == 0


def test_newer_schema_is_refused(postgres_url: str, tmp_path: Path) -> None:
    storage = _rdb(postgres_url)
    with storage.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'v99.0.0.a'")
    storage.engine.dispose()
    _error(run_cli("db", "check", "--storage", postgres_url), "newer Optuna")
    _error(run_cli("db", "upgrade", "--storage", postgres_url), "newer Optuna")
    _error(run_cli("study", "list", "--storage", postgres_url), "newer Optuna")


def test_journal_file_check(tmp_path: Path) -> None:
    r = run_cli("db", "check", "--storage", str(tmp_path / "x.journal"))
    assert r.exit_code == 0 and "journal file" in r.output


def _study_id_indexes(url: str) -> list[str]:
    storage = _rdb(url)
    with storage.engine.begin() as conn:
        rows = conn.exec_driver_sql("SELECT indexname FROM pg_indexes WHERE tablename = "
                                    "'trials' AND indexdef LIKE '%%(study_id)%%'").fetchall()
    storage.engine.dispose()
    return [r[0] for r in rows]
