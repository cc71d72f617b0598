"""Errors about where studies and artifacts live; messages never contain passwords."""

from __future__ import annotations


class StorageError(Exception):
    """A storage URL or store that cannot be used as given; the message says the fix."""
