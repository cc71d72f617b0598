"""Start a throwaway PostgreSQL server from the installed binaries (as an unprivileged user
when running as root, which PostgreSQL refuses)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

PASSWORD = "s3cret-test-pw"


@dataclass
class PostgresServer:
    base_url: str  # postgresql://user@host:port
    data_dir: Path | None
    bin_dir: Path | None
    run_as: list[str]

    def url(self, database: str) -> str:
        return f"{self.base_url}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def pg_ctl(self, *args: str) -> None:
        assert self.bin_dir is not None and self.data_dir is not None
        subprocess.run([*self.run_as, str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir),
                        *args], check=True, capture_output=True, timeout=60)

    def restart(self) -> None:
        """Fast restart: every open connection is cut, as in a failover or a crash."""
        assert self.data_dir is not None
        self.pg_ctl("restart", "-w", "-m", "fast", "-l", str(self.data_dir.parent / "log"))

    def stop(self) -> None:
        if self.data_dir is not None:
            try:
                self.pg_ctl("stop", "-m", "immediate", "-w")
            except (subprocess.SubprocessError, OSError):
                pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[3]) if p.split("/")[3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def start_postgres(tmp: Path) -> PostgresServer:
    external = os.environ.get("HPO_TEST_POSTGRES_URL")
    if external:
        return PostgresServer(external.rstrip("/").rsplit("/", 1)[0], None, None, [])
    bin_dir = find_bin_dir()
    if bin_dir is None:
        reason = "PostgreSQL binaries (initdb, pg_ctl) not found"
        if os.environ.get("HPO_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason + " and HPO_REQUIRE_POSTGRES=1")
        pytest.skip(reason)
    run_as: list[str] = []
    if os.geteuid() == 0:
        run_as = ["runuser", "-u", "postgres", "--"]
        os.chmod(tmp, 0o777)
        for parent in tmp.parents:  # the postgres user must be able to reach the directory
            if str(parent) in ("/", "/tmp"):
                break
            os.chmod(parent, os.stat(parent).st_mode | 0o011)
    data = tmp / "data"
    port = _free_port()
    pwfile = tmp / "pw"
    pwfile.write_text(PASSWORD + "\n")
    os.chmod(pwfile, 0o644)
    # Password auth over TCP (as real deployments), so wrong passwords can be tested.
    subprocess.run([*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", "hpo",
                    "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
                    "-E", "UTF8", "--no-sync"], check=True, capture_output=True, timeout=120)
    server = PostgresServer(f"postgresql://hpo:{PASSWORD}@127.0.0.1:{port}", data, bin_dir,
                            run_as)
    server.pg_ctl("start", "-w", "-l", str(tmp / "log"), "-o",
                  f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off "
                  "-c max_connections=300")
    return server
