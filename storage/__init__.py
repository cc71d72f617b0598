"""Where studies and checkpoints live: storage URLs, engines, artifact store (no training)."""

from storage.artifacts import (
    ENV_ARTIFACTS,
    check_artifact_dir,
    default_artifact_dir,
    open_artifact_store,
)
from storage.db import DbStatus, check_db, upgrade_db
from storage.errors import StorageError
from storage.heartbeat import SilentTrialWatch, never_beat_trial_ids
from storage.open import enable_heartbeat, open_storage, retry_callback
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
    "DbStatus",
    "check_artifact_dir",
    "check_db",
    "upgrade_db",
    "DEFAULT_STORAGE",
    "ENV_ARTIFACTS",
    "ENV_STORAGE",
    "SilentTrialWatch",
    "StorageError",
    "StorageSpec",
    "default_artifact_dir",
    "enable_heartbeat",
    "engine_kwargs",
    "never_beat_trial_ids",
    "open_artifact_store",
    "open_storage",
    "parse_storage",
    "redact",
    "resolve_storage_url",
    "retry_callback",
]
