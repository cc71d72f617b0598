from __future__ import annotations

from pathlib import Path

import pytest

from storage.fs import make_folders, nearest_existing, remove_new_folders


def test_new_folders_are_made_and_removed_again(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c"
    assert nearest_existing(target) == tmp_path
    made = make_folders(target)
    assert made == [tmp_path / "a", tmp_path / "a" / "b", target] and target.is_dir()
    assert make_folders(target) == []  # nothing new
    (tmp_path / "a" / "keep.txt").write_text("someone else's file")
    remove_new_folders(made)
    assert not (tmp_path / "a" / "b").exists() and (tmp_path / "a" / "keep.txt").exists()


def test_a_file_in_the_way_makes_nothing(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError):
        make_folders(tmp_path / "file" / "a" / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
