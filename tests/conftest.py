"""Shared fixtures: real data, real weights, a throwaway PostgreSQL server. No network."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before timm/huggingface_hub are imported anywhere
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.pg import PostgresServer, start_postgres  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HPO_SHARED_DIR", REPO.parent / "shared"))


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's storage/data settings unless they set them."""
    for var in ("HPO_STORAGE", "HPO_ARTIFACTS", "HPO_WEIGHTS_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HPO_DATA_DIR", str(data_dir_path()))


def data_dir_path() -> Path:
    return Path(os.environ.get("HPO_TEST_DATA_DIR", SHARED / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = data_dir_path()
    if not (path / "breastmnist.npz").is_file():
        pytest.fail(f"test data missing: {path}/breastmnist.npz (set HPO_TEST_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def breast_npz(data_dir: Path) -> Path:
    return data_dir / "breastmnist.npz"


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    path = Path(os.environ.get("HPO_TEST_WEIGHTS_DIR", SHARED / "weights"))
    if not (path / "mobilenetv2_100.in1k.safetensors").is_file():
        pytest.fail(f"test weights missing in {path} (set HPO_TEST_WEIGHTS_DIR)")
    return path


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session (or $HPO_TEST_POSTGRES_URL)."""
    server = start_postgres(tmp_path_factory.mktemp("pg"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database per test."""
    return postgres_server.create_database(f"t_{uuid.uuid4().hex[:12]}")
