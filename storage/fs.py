"""Folders created for an output and removed again if writing it fails, so a failed command
leaves nothing behind (shared by the artifact-store check and hpo's export/report)."""

from __future__ import annotations

import os
from pathlib import Path


def nearest_existing(path: Path) -> Path:
    """``path`` itself, or the closest folder above it that exists."""
    p = Path(os.path.expanduser(str(path))).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and the missing folders above it; returns the new ones, shallowest
    first. If one cannot be made, those made so far are removed and the error is raised."""
    folder = Path(os.path.expanduser(str(folder))).absolute()
    missing = []
    p = folder
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    made: list[Path] = []
    try:
        for d in reversed(missing):
            d.mkdir()
            made.append(d)
    except OSError:
        remove_new_folders(made)
        raise
    return made


def remove_new_folders(created: list[Path]) -> None:
    """Remove folders ``make_folders`` created, deepest first, stopping at one that is no
    longer empty (something else wrote there)."""
    for d in reversed(created):
        try:
            d.rmdir()
        except OSError:
            return
