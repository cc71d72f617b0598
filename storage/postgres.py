"""SQLAlchemy engine settings for many worker processes sharing one PostgreSQL server."""

from __future__ import annotations

import os
import socket
from typing import Any

# Each worker process needs one connection at a time (ask/report/tell are sequential); a
# heartbeat thread may need a second. A bounded pool keeps 100 workers at <= 300 connections.
POOL_SIZE = 2
MAX_OVERFLOW = 1
POOL_RECYCLE_S = 1800
CONNECT_TIMEOUT_S = 10


def application_name() -> str:
    return f"hpo:{socket.gethostname()}:{os.getpid()}"[-63:]


def engine_kwargs(pool_size: int = POOL_SIZE, max_overflow: int = MAX_OVERFLOW) -> dict[str, Any]:
    return {
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        "pool_pre_ping": True,  # survive server restarts and idle-connection reaping
        "pool_recycle": POOL_RECYCLE_S,
        "pool_timeout": 60,
        # "hpo:<host>:<pid>" in pg_stat_activity tells a DBA which worker holds what
        "connect_args": {"connect_timeout": CONNECT_TIMEOUT_S,
                         "application_name": application_name()},
    }
