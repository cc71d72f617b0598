"""The orchestration layer's error for user mistakes (the CLI prints it as ``Error: ...``)."""

from __future__ import annotations

from storage import StorageError
from trainers import TrainerError


class HpoError(Exception):
    """A bad input or state the user can fix; the message names the input and the fix."""


USER_ERRORS: tuple[type[Exception], ...] = (HpoError, TrainerError, StorageError)
"""Every exception type whose message is meant for the user, not a traceback."""
