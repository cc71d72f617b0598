"""Where studies and checkpoints live: storage URLs, engines, artifact store (no training)."""

from storage.artifacts import ENV_ARTIFACTS, default_artifact_dir, open_artifact_store
from storage.errors import StorageError
from storage.open import open_storage
from storage.postgres import engine_kwargs
from storage.urls import (
    DEFAULT_STORAGE,
    ENV_STORAGE,
    StorageSpec,
    parse_storage,
    redact,
    resolve_storage_url,
)

__all__ = [
    "DEFAULT_STORAGE",
    "ENV_ARTIFACTS",
    "ENV_STORAGE",
    "StorageError",
    "StorageSpec",
    "default_artifact_dir",
    "engine_kwargs",
    "open_artifact_store",
    "open_storage",
    "parse_storage",
    "redact",
    "resolve_storage_url",
]
