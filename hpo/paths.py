"""Output paths checked before any work, so a bad ``--out`` fails with one line, not a
traceback after minutes of evaluation."""

from __future__ import annotations

from pathlib import Path

from hpo.errors import HpoError
from storage.fs import nearest_existing


def check_output_location(path: Path, flag: str) -> None:
    """Fail now if ``path`` cannot be created: something above it is a file, not a folder."""
    above = nearest_existing(path.parent)
    if not above.is_dir():
        raise HpoError(f"{flag} {path}: {above} is a file, not a folder; pass a path in a "
                       "folder you can write to")


def write_error(path: Path, flag: str, e: OSError) -> HpoError:
    """The one-line error for an output that could not be written (permissions, read-only
    or virtual file systems, a full disk)."""
    return HpoError(f"{flag} {path}: cannot write there ({e.strerror or e}); pass a path on a "
                    "writable disk (nothing was written)")
