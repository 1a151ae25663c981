"""Input listing: recursion, filters, list files, symlink loops."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from imgflow.stages.ingest import Filters, IngestIssue, iter_inputs


def _tree(root: Path) -> None:
    for relative in ("a.jpg", "b.png", "sub/c.jpg", "sub/deep/d.jpg", "sub/skip.tmp"):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def _names(items: list) -> list[str]:
    return [Path(item).name for item in items if not isinstance(item, IngestIssue)]


def test_folder_walk_sorted_and_recursive(tmp_path: Path) -> None:
    """A folder yields every file below it, in sorted order."""
    _tree(tmp_path)
    assert _names(list(iter_inputs([str(tmp_path)]))) == [
        "a.jpg",
        "b.png",
        "c.jpg",
        "d.jpg",
        "skip.tmp",
    ]


def test_include_and_exclude(tmp_path: Path) -> None:
    """Include and exclude globs match names and relative paths."""
    _tree(tmp_path)
    filters = Filters(include=("*.jpg",), exclude=("sub/deep/*",))
    assert _names(list(iter_inputs([str(tmp_path)], filters=filters))) == [
        "a.jpg",
        "c.jpg",
    ]


def test_symlink_loop_listed_once(tmp_path: Path) -> None:
    """A symlink back to an ancestor is not followed, and is no issue."""
    _tree(tmp_path)
    os.symlink(tmp_path, tmp_path / "sub" / "loop")
    found = list(iter_inputs([str(tmp_path)]))
    assert [item for item in found if isinstance(item, IngestIssue)] == []
    assert len(_names(found)) == 5


def test_file_symlink_loop_in_folder(tmp_path: Path) -> None:
    """Links that point at each other are listed as files, unless excluded."""
    (tmp_path / "a.jpg").write_bytes(b"x")
    os.symlink(tmp_path / "y.jpg", tmp_path / "x.jpg")
    os.symlink(tmp_path / "x.jpg", tmp_path / "y.jpg")
    found = list(iter_inputs([str(tmp_path)]))
    assert [item for item in found if isinstance(item, IngestIssue)] == []
    assert _names(found) == ["a.jpg", "x.jpg", "y.jpg"]
    excluded = list(
        iter_inputs([str(tmp_path)], filters=Filters(exclude=("[xy].jpg",)))
    )
    assert excluded == [tmp_path / "a.jpg"]


def test_folders_nested_past_recursion_limit(tmp_path: Path) -> None:
    """A tree deeper than Python's recursion limit is walked to its end."""
    folder = tmp_path
    for _ in range(400):
        folder = folder / "d"
        folder.mkdir()
    (folder / "deep.jpg").write_bytes(b"x")
    limit = sys.getrecursionlimit()
    # A low limit keeps the tree, and the test, small.
    sys.setrecursionlimit(300)
    try:
        found = list(iter_inputs([str(tmp_path)]))
    finally:
        sys.setrecursionlimit(limit)
    assert _names(found) == ["deep.jpg"]


def test_missing_input_reported(tmp_path: Path) -> None:
    """A path that does not exist becomes an issue, not an exception."""
    found = list(iter_inputs([str(tmp_path / "nope.jpg")]))
    assert found == [IngestIssue(str(tmp_path / "nope.jpg"), "input not found")]


def test_overlapping_inputs_listed_once(tmp_path: Path) -> None:
    """A file reached through two inputs, one a symlinked folder, comes once."""
    _tree(tmp_path)
    os.symlink(tmp_path / "sub", tmp_path / "link")
    inputs = [
        str(tmp_path / "sub"),
        str(tmp_path / "link"),
        str(tmp_path / "link" / "c.jpg"),
    ]
    found = list(iter_inputs(inputs))
    assert [item for item in found if isinstance(item, IngestIssue)] == []
    assert _names(found) == ["c.jpg", "d.jpg", "skip.tmp"]


def test_nul_byte_in_list_file_reported(tmp_path: Path) -> None:
    """A listed path with a NUL byte is named invalid, not missing."""
    listing = tmp_path / "list.txt"
    listing.write_text("bad\x00name.jpg\n")
    found = list(iter_inputs([], list_files=[str(listing)]))
    assert found == [
        IngestIssue("bad\x00name.jpg", "invalid path: it contains a NUL byte")
    ]


def test_name_too_long_reported(tmp_path: Path) -> None:
    """A name the system cannot look up becomes an issue, and the rest still come."""
    _tree(tmp_path)
    long_name = str(tmp_path / ("a" * 300 + ".jpg"))
    found = list(iter_inputs([long_name, str(tmp_path / "a.jpg")]))
    assert found[0] == IngestIssue(long_name, "cannot read input: File name too long")
    assert _names(found) == ["a.jpg"]


def test_unsearchable_folder_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file in a folder that may not be searched becomes an issue."""
    _tree(tmp_path)
    blocked = tmp_path / "sub" / "c.jpg"
    real_is_dir = Path.is_dir

    def is_dir(path: Path) -> bool:
        if path == blocked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_is_dir(path)

    monkeypatch.setattr(Path, "is_dir", is_dir)
    found = list(iter_inputs([str(blocked), str(tmp_path / "b.png")]))
    assert found[0] == IngestIssue(str(blocked), "cannot read input: Permission denied")
    assert _names(found) == ["b.png"]


def test_unsearchable_entry_in_walk_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry of a listed folder that cannot be looked up becomes an issue."""
    _tree(tmp_path)
    real_is_dir = os.DirEntry.is_dir

    def is_dir(entry: os.DirEntry, **kwargs: bool) -> bool:
        if entry.name == "b.png":
            raise PermissionError(13, "Permission denied", entry.path)
        return real_is_dir(entry, **kwargs)

    monkeypatch.setattr(os.DirEntry, "is_dir", is_dir, raising=False)
    found = list(iter_inputs([str(tmp_path)]))
    issues = [item for item in found if isinstance(item, IngestIssue)]
    assert issues == [
        IngestIssue(str(tmp_path / "b.png"), "cannot read input: Permission denied")
    ]
    assert "b.png" not in _names(found)


def test_list_file_and_duplicates(tmp_path: Path) -> None:
    """A list file adds paths; a file named twice is yielded once."""
    _tree(tmp_path)
    listing = tmp_path / "list.txt"
    listing.write_text(f"# comment\n{tmp_path / 'a.jpg'}\n\n{tmp_path / 'b.png'}\n")
    found = list(iter_inputs([str(tmp_path / "a.jpg")], list_files=[str(listing)]))
    assert _names(found) == ["a.jpg", "b.png"]


def test_broken_symlink_yielded(tmp_path: Path) -> None:
    """A dangling symlink is yielded so the run records it as unreadable."""
    os.symlink(tmp_path / "gone.jpg", tmp_path / "link.jpg")
    assert _names(list(iter_inputs([str(tmp_path)]))) == ["link.jpg"]
