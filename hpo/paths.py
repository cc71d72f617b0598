"""Output paths checked before any work, so a bad ``--out`` fails with one line, not a
traceback after minutes of evaluation."""

from __future__ import annotations

from pathlib import Path

from hpo.errors import HpoError


def nearest_existing(path: Path) -> Path:
    """``path`` itself, or the closest folder above it that exists."""
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


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


def make_parents(path: Path) -> list[Path]:
    """Create the folders above ``path``; returns those that were new (deepest last), so a
    failed write can remove them again."""
    missing = []
    p = path.absolute().parent
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir()
    return list(reversed(missing))


def remove_new_folders(created: list[Path]) -> None:
    for d in reversed(created):
        try:
            d.rmdir()
        except OSError:
            return  # not empty any more: something else wrote there
