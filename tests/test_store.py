"""Atomic writes, output keys and unreadable sources."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imgflow.config import PipelineConfig, ValidateConfig
from imgflow.errors import Reason, Rejected, StageFailed
from imgflow.runner import RunRequest, collect_sources, execute
from imgflow.stages import ingest, store
from imgflow.stages.ingest import read_source


def test_write_atomic_replaces_whole_file(tmp_path: Path) -> None:
    """The target contains the new bytes and no temporary file remains."""
    target = tmp_path / "v" / "x.jpg"
    store.write_atomic(target, b"old", fsync=False)
    store.write_atomic(target, b"new bytes", fsync=True)
    assert target.read_bytes() == b"new bytes"
    assert [p.name for p in target.parent.iterdir()] == ["x.jpg"]


def test_failed_write_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure before the rename leaves neither target nor temporary file."""

    def fail(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    target = tmp_path / "x.jpg"
    with pytest.raises(StageFailed) as caught:
        store.write_atomic(target, b"data", fsync=False)
    assert caught.value.reason is Reason.WRITE_FAILED
    assert "No space left" in caught.value.message
    assert list(tmp_path.iterdir()) == []


def test_write_into_file_path_fails_cleanly(tmp_path: Path) -> None:
    """An output folder that is really a file gives WRITE_FAILED."""
    (tmp_path / "thumb").write_bytes(b"")
    with pytest.raises(StageFailed) as caught:
        store.write_atomic(tmp_path / "thumb" / "x.jpg", b"data", fsync=False)
    assert caught.value.reason is Reason.WRITE_FAILED


def test_image_key_safe_and_distinct() -> None:
    """Keys are filesystem-safe and differ when the bytes differ."""
    first = store.image_key("/a/IMG 0001 (copy).JPG", "ab" * 32)
    second = store.image_key("/b/IMG 0001 (copy).JPG", "cd" * 32)
    assert first == "IMG_0001_copy-abababababababab"
    assert first != second
    assert store.image_key("/x/%%%.jpg", "ef" * 32) == "image-efefefefefefefef"


def test_read_source_missing_file(tmp_path: Path) -> None:
    """A file deleted before it is read fails as UNREADABLE."""
    with pytest.raises(StageFailed) as caught:
        read_source(str(tmp_path / "gone.jpg"), ValidateConfig())
    assert caught.value.reason is Reason.UNREADABLE


def test_read_source_folder_rejected(tmp_path: Path) -> None:
    """A folder listed as a file is rejected, not retried."""
    with pytest.raises(Rejected) as caught:
        read_source(str(tmp_path), ValidateConfig())
    assert caught.value.reason is Reason.NOT_A_FILE
    assert "not a regular file" in caught.value.message


def test_read_source_symlink_loop_rejected(tmp_path: Path) -> None:
    """A symlink loop stays one, so it is rejected rather than retried."""
    loop = tmp_path / "loop.jpg"
    loop.symlink_to(loop)
    with pytest.raises(Rejected) as caught:
        read_source(str(loop), ValidateConfig())
    assert caught.value.reason is Reason.NOT_A_FILE


def test_read_source_broken_symlink_rejected(tmp_path: Path) -> None:
    """A link to a missing file is rejected rather than retried."""
    link = tmp_path / "dangling.jpg"
    link.symlink_to(tmp_path / "missing.jpg")
    with pytest.raises(Rejected) as caught:
        read_source(str(link), ValidateConfig())
    assert caught.value.reason is Reason.NOT_A_FILE
    assert "symbolic link to a missing file" in caught.value.message


def _stat_reporting_size(size: int):
    real_stat = os.stat

    def fake_stat(path: str) -> os.stat_result:
        values = list(real_stat(path))
        values[6] = size  # st_size
        return os.stat_result(values)

    return fake_stat


def test_read_source_file_grown_after_stat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes added after the size check are read, up to the byte limit."""
    path = tmp_path / "growing.jpg"
    path.write_bytes(b"x" * 5000)
    monkeypatch.setattr(ingest.os, "stat", _stat_reporting_size(1000))
    assert len(read_source(str(path), ValidateConfig())) == 5000
    with pytest.raises(Rejected) as caught:
        read_source(str(path), ValidateConfig(max_file_bytes=4000))
    assert caught.value.reason is Reason.FILE_TOO_LARGE


def test_non_regular_input_tried_once(tmp_path: Path) -> None:
    """A FIFO named like a photo is rejected after one attempt, in every model."""
    folder = tmp_path / "in"
    folder.mkdir()
    os.mkfifo(folder / "pipe.jpg")
    request = RunRequest(
        inputs=[str(folder)], out_dir=tmp_path / "out", config=PipelineConfig(),
        mode="parallel", workers=1, retry_delay=5.0,
    )  # fmt: skip
    sources, issues = collect_sources(request)
    summary = execute(request, sources, issues)
    (result,) = summary.results
    assert result.status.value == "rejected"
    assert result.attempts == 1
