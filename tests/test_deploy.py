"""docker-compose.yml and the Dockerfile: Docker cannot run here, so check that the compose
file parses, has what a deployment needs, and that its commands match the real CLIs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import click
import pytest
import yaml

from hpo.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def _interpolate(args: list[str]) -> list[str]:
    """Docker compose's ${VAR:-default} with the defaults."""
    return [re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", a) for a in args]


def test_services_and_their_wiring(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "dashboard", "worker"}
    pg = services["postgres"]
    assert pg["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert any(v.startswith("pgdata:/var/lib/postgresql/data") for v in pg["volumes"])
    assert "pgdata" in compose["volumes"] and "artifacts" in compose["volumes"]
    for name in ("dashboard", "worker"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert any(v.startswith("artifacts:/artifacts") for v in services[name]["volumes"])
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    assert services["worker"]["stop_signal"] == "SIGTERM"
    assert services["dashboard"]["ports"] == ["127.0.0.1:8080:8080"]  # loopback by default


def test_worker_command_parses_with_the_real_cli(compose: dict) -> None:
    args = _interpolate(compose["services"]["worker"]["command"])
    name, rest = args[0], args[1:]
    command = main.get_command(click.Context(main), name)
    assert command is not None, f"hpo has no command {name!r}"
    ctx = command.make_context(name, list(rest))  # raises on unknown or malformed options
    assert ctx.params["storage"].startswith("postgresql://hpo:")
    assert ctx.params["device"] == "cuda" and ctx.params["study_name"] == "hpo"


def test_dashboard_command_matches_optuna_dashboard(compose: dict) -> None:
    exe = shutil.which("optuna-dashboard")
    assert exe, "optuna-dashboard is a dependency and must be installed"
    help_text = subprocess.run([exe, "--help"], capture_output=True, text=True).stdout
    args = _interpolate(compose["services"]["dashboard"]["command"])
    for flag in (a for a in args if a.startswith("--")):
        assert flag in help_text, f"optuna-dashboard has no {flag}"
    assert args[0].startswith("postgresql+psycopg://")


def test_dockerfile_installs_this_project() -> None:
    text = (REPO / "Dockerfile").read_text()
    for path in re.findall(r"^COPY (\S+)", text, flags=re.M):
        assert (REPO / path).exists(), f"Dockerfile copies missing {path}"
    assert 'ENTRYPOINT ["hpo"]' in text
    assert "HPO_ARTIFACTS=/artifacts" in text
