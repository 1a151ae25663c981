"""The dead-letter queue: list, show, retry and purge."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import jpeg_bytes, quadrant_pixels
from faults import FaultyPipeline
from imgflow.cli import main
from imgflow.config import parse_config
from imgflow.errors import Status
from imgflow.executors.base import RetryPolicy, RunControl
from imgflow.runner import RunRequest, collect_sources, execute

CONFIG = parse_config({"variants": {"thumb": {"size": 48}}})


def _cli(*args: str):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    result.text = " ".join(result.output.split())  # type: ignore[attr-defined]
    return result


@pytest.fixture
def dead_run(tmp_path: Path) -> tuple[Path, Path]:
    """An output folder where one image died from an I/O error."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("ioerror_once", "good"):
        image = Image.fromarray(quadrant_pixels(120, 80))
        (folder / f"{name}.jpg").write_bytes(jpeg_bytes(image))
    markers = tmp_path / "markers"
    markers.mkdir()
    out = tmp_path / "out"
    request = RunRequest(
        inputs=[str(folder)], out_dir=out, config=CONFIG, mode="sequential"
    )
    sources, issues = collect_sources(request)
    summary = execute(
        request,
        sources,
        issues,
        control=RunControl(retry=RetryPolicy(attempts=1)),
        pipeline=FaultyPipeline(CONFIG, out, markers=markers),
    )
    assert summary.counts == {"done": 1, "failed": 1}
    return out, folder / "ioerror_once.jpg"


def test_list_shows_dead_image(dead_run: tuple[Path, Path]) -> None:
    """The dead image is listed with its stage, reason and attempts."""
    out, dead = dead_run
    result = _cli("dlq", "list", "--out", str(out))
    assert result.exit_code == 0
    assert "ioerror_once.jpg" in result.text
    assert "io_error" in result.text
    assert "good.jpg" not in result.text


def test_list_json_for_scripts(dead_run: tuple[Path, Path]) -> None:
    """--json prints one parseable line per dead image with the full path."""
    import json

    out, dead = dead_run
    result = _cli("dlq", "list", "--out", str(out), "--json")
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["source"] for line in lines] == [str(dead)]
    assert lines[0]["reason"] == "io_error"


def test_show_prints_details(dead_run: tuple[Path, Path]) -> None:
    """show prints every recorded field of one dead image."""
    out, dead = dead_run
    result = _cli("dlq", "show", "--out", str(out), str(dead))
    assert result.exit_code == 0
    assert "reason: io_error" in result.text
    assert "attempts: 1" in result.text


def test_retry_clears_queue(dead_run: tuple[Path, Path]) -> None:
    """A retry that succeeds takes the image out of the queue."""
    out, dead = dead_run
    result = _cli("dlq", "retry", "--out", str(out), "--mode", "sequential", "-q")
    assert result.exit_code == 0
    assert "empty" in _cli("dlq", "list", "--out", str(out)).text
    assert list((out / "thumb").glob("ioerror_once-*.jpg"))


def test_purge_removes_entry(dead_run: tuple[Path, Path]) -> None:
    """purge drops the dead image from the catalog."""
    out, dead = dead_run
    result = _cli("dlq", "purge", "--out", str(out))
    assert result.exit_code == 0
    assert "Purged 1 dead image" in result.text
    assert "empty" in _cli("dlq", "list", "--out", str(out)).text


def test_purge_accepts_relative_path(
    dead_run: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """purge finds a dead image named relative to the working folder, as show does."""
    out, dead = dead_run
    monkeypatch.chdir(dead.parent)
    result = _cli("dlq", "purge", "--out", str(out), dead.name)
    assert result.exit_code == 0
    assert "Purged 1 dead image" in result.text
    assert "not in the dead-letter queue" not in result.text


def test_dlq_on_missing_catalog(tmp_path: Path) -> None:
    """A folder without a catalog is a usage error."""
    result = _cli("dlq", "list", "--out", str(tmp_path))
    assert result.exit_code == 2
    assert "no catalog" in result.text


def test_dead_status_in_report(dead_run: tuple[Path, Path]) -> None:
    """The dead image keeps status failed in results; the catalog records dead."""
    import sqlite3

    out, dead = dead_run
    with sqlite3.connect(out / "catalog.sqlite") as connection:
        status = connection.execute(
            "SELECT status FROM images WHERE source = ?", (str(dead),)
        ).fetchone()[0]
    assert status == "dead"
    assert Status.FAILED.value == "failed"
