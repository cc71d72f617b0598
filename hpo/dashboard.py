"""``hpo dashboard``: optuna-dashboard on the same storage and artifact store as the workers."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import optuna

from hpo.config import CONFIG_ATTR, StudyConfig
from hpo.errors import HpoError
from storage import default_artifact_dir, open_artifact_store, open_storage

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def artifact_dir_for(storage_url: str, explicit: str | None = None) -> Path:
    """--artifacts, $HPO_ARTIFACTS, the folder the storage's hpo studies use, or the default."""
    if explicit or os.environ.get("HPO_ARTIFACTS"):
        return Path(explicit or os.environ["HPO_ARTIFACTS"])
    storage = open_storage(storage_url, create=False)
    dirs = set()
    for s in optuna.get_all_study_summaries(storage, include_best_trial=False):
        raw = s.user_attrs.get(CONFIG_ATTR)
        if raw:
            dirs.add(StudyConfig.from_json(raw).artifacts)
    if len(dirs) > 1:
        raise HpoError(f"studies in this storage keep checkpoints in {len(dirs)} folders "
                       f"({', '.join(sorted(dirs))}); pick one with --artifacts")
    return Path(dirs.pop()) if dirs else default_artifact_dir(storage_url)


def serve(storage_url: str, host: str, port: int, artifacts: str | None = None,
          on_start: Callable[[str], None] | None = None) -> None:
    from optuna_dashboard import run_server

    if not 0 < port < 65536:
        raise HpoError(f"port must be between 1 and 65535, but got {port}")
    store = open_artifact_store(artifact_dir_for(storage_url, artifacts))
    if host not in LOOPBACK:
        log.warning("the dashboard has no authentication and listens on %s: anyone who can "
                    "reach this machine can see and change the studies", host)
    if on_start is not None:
        on_start(f"http://{host}:{port}/dashboard")
    try:
        run_server(open_storage(storage_url, create=False), host=host, port=port,
                   artifact_store=store)
    except OSError as e:
        raise HpoError(f"cannot listen on {host}:{port} ({e.strerror}); pick another --port") \
            from e
