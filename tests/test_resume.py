"""Crash-safe resume: the catalog is the journal of every image."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import jpeg_bytes, quadrant_pixels
from imgflow.config import parse_config
from imgflow.runner import RunRequest, collect_sources, execute
from test_executor_contract import _catalog, _files

CONFIG = {"variants": {"thumb": {"size": 64}, "medium": {"size": 160}}}
KILL_POINTS = 20
IMAGES = 80


def _photos(folder: Path, count: int, size: tuple[int, int] = (320, 240)) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for index in range(count):
        noise = rng.integers(0, 60, (size[1], size[0], 3), dtype=np.uint8)
        pixels = quadrant_pixels(*size) // 2 + noise
        (folder / f"img_{index:03}.jpg").write_bytes(
            jpeg_bytes(Image.fromarray(pixels))
        )
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    return folder


def _run(inputs: Path, out: Path, config: dict = CONFIG, mode: str = "sequential"):
    request = RunRequest(
        inputs=[str(inputs)],
        out_dir=out,
        config=parse_config(config),
        mode=mode,
        workers=2,
    )
    sources, issues = collect_sources(request)
    return execute(request, sources, issues)


def test_second_run_does_nothing(tmp_path: Path) -> None:
    """A run on a finished folder skips every image and reports it."""
    inputs = _photos(tmp_path / "in", 5)
    _run(inputs, tmp_path / "out")
    again = _run(inputs, tmp_path / "out")
    assert again.results == []
    assert len(again.skipped) == 6
    assert {item.status for item in again.skipped} == {"done", "rejected"}
    assert not again.all_done


def test_config_change_redoes_all(tmp_path: Path) -> None:
    """A different variant set is a different config: every image runs again."""
    inputs = _photos(tmp_path / "in", 4)
    _run(inputs, tmp_path / "out")
    changed = {"variants": {"thumb": {"size": 72}, "medium": {"size": 160}}}
    again = _run(inputs, tmp_path / "out", changed)
    assert len(again.results) == 5
    assert again.skipped == []


def test_touched_source_redone(tmp_path: Path) -> None:
    """Only a source whose modification time changed runs again."""
    inputs = _photos(tmp_path / "in", 4)
    _run(inputs, tmp_path / "out")
    target = inputs / "img_002.jpg"
    os.utime(target, ns=(time.time_ns(), time.time_ns()))
    again = _run(inputs, tmp_path / "out")
    assert [Path(r.source.path).name for r in again.results] == ["img_002.jpg"]


def test_missing_variant_redone(tmp_path: Path) -> None:
    """An image whose variant file vanished is processed again."""
    inputs = _photos(tmp_path / "in", 3)
    out = tmp_path / "out"
    first = _run(inputs, out)
    victim = next(r for r in first.results if r.variants)
    (out / victim.variants[0].path).unlink()
    again = _run(inputs, out)
    assert [r.source.path for r in again.results] == [victim.source.path]
    assert (out / victim.variants[0].path).is_file()


@pytest.mark.parametrize(
    "damage",
    ["variant replaced", "variant cut", "variant overwritten", "sidecar gone"],
)
def test_damaged_output_redone(tmp_path: Path, damage: str) -> None:
    """An image whose outputs changed or lost the sidecar runs again."""
    inputs = _photos(tmp_path / "in", 3)
    out = tmp_path / "out"
    first = _run(inputs, out)
    victim = next(r for r in first.results if r.variants)
    variant = out / victim.variants[0].path
    if damage == "variant replaced":
        variant.write_text("not a picture")
    elif damage == "variant cut":
        variant.write_bytes(variant.read_bytes()[:-10])
    elif damage == "variant overwritten":
        # Same size, other bytes, written a second later than recorded.
        variant.write_bytes(bytes(variant.stat().st_size))
        later = victim.variants[0].mtime_ns + 1_000_000_000
        os.utime(variant, ns=(later, later))
    else:
        (out / "meta" / f"{victim.key}.json").unlink()
    again = _run(inputs, out)
    assert [r.source.path for r in again.results] == [victim.source.path]
    assert variant.stat().st_size == victim.variants[0].bytes
    assert variant.read_bytes() != bytes(victim.variants[0].bytes)
    assert (out / "meta" / f"{victim.key}.json").is_file()


def test_catalog_without_variant_times_upgraded(tmp_path: Path) -> None:
    """A catalog from before variant times gains the column and resumes by size."""
    inputs = _photos(tmp_path / "in", 3)
    out = tmp_path / "out"
    _run(inputs, out)
    with sqlite3.connect(out / "catalog.sqlite") as connection:
        connection.execute("ALTER TABLE variants DROP COLUMN mtime_ns")
    again = _run(inputs, out)
    assert again.results == []
    assert len(again.skipped) == 4
    with sqlite3.connect(out / "catalog.sqlite") as connection:
        times = [row[0] for row in connection.execute("SELECT mtime_ns FROM variants")]
    assert times
    assert all(value is None for value in times)


def test_journal_states(tmp_path: Path) -> None:
    """Finished images are done, rejected or dead; none stay pending."""
    inputs = _photos(tmp_path / "in", 3)
    _run(inputs, tmp_path / "out")
    with sqlite3.connect(tmp_path / "out" / "catalog.sqlite") as connection:
        states = dict(
            connection.execute("SELECT status, count(*) FROM images GROUP BY 1")
        )
    assert states == {"done": 3, "rejected": 1}


def _done_count(out: Path) -> int:
    if not (out / "catalog.sqlite").exists():
        return 0
    with sqlite3.connect(out / "catalog.sqlite") as connection:
        try:
            row = connection.execute(
                "SELECT count(*) FROM images WHERE status = 'done'"
            )
        except sqlite3.OperationalError:
            return 0  # The run has created the file but not yet its tables.
        return int(row.fetchone()[0])


def _wait_for_progress(out: Path, before: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if _done_count(out) > before:
            return
        time.sleep(0.02)


def _command(inputs: Path, out: Path, config: Path, mode: str) -> list[str]:
    return [
        sys.executable, "-m", "imgflow", "run", str(inputs), "--out", str(out),
        "--config", str(config), "--mode", mode, "--workers", "2", "-q",
    ]  # fmt: skip


@pytest.mark.slow
def test_resume_after_sigkill_matches_clean_run(tmp_path: Path) -> None:
    """Kill -9 at 20 points, resume each time: the result equals an uninterrupted run."""
    inputs = _photos(tmp_path / "in", IMAGES, size=(1200, 900))
    config = tmp_path / "config.toml"
    # A WebP variant makes each image slow enough for kills to land mid-run.
    config.write_text(
        "[variants.thumb]\nsize = 64\n\n[variants.web]\nsize = 600\nformat = 'webp'\n",
        encoding="utf-8",
    )
    clean = tmp_path / "clean"
    subprocess.run(
        _command(inputs, clean, config, "sequential"), check=False, timeout=300
    )

    out = tmp_path / "out"
    rng = random.Random(11)
    done_after_kill = []
    for kill in range(KILL_POINTS):
        before = _done_count(out)
        mode = "sequential" if kill % 2 == 0 else "parallel"
        process = subprocess.Popen(
            _command(inputs, out, config, mode), start_new_session=True
        )
        if kill % 4 == 0:
            # During start-up: listing, catalog set-up, worker start.
            time.sleep(rng.uniform(0.05, 0.5))
        else:
            # Mid-image: soon after the run has recorded some progress.
            _wait_for_progress(out, before, process)
            time.sleep(rng.uniform(0.0, 0.1))
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        done_after_kill.append(_done_count(out))
    # The kills landed over the course of the work, not after it ended.
    assert done_after_kill[-1] < IMAGES
    assert done_after_kill == sorted(done_after_kill)

    final = subprocess.run(_command(inputs, out, config, "sequential"), timeout=300)
    assert final.returncode == 1  # broken.jpg stays rejected
    assert _files(out) == _files(clean)
    assert _catalog(out) == _catalog(clean)
    assert list(out.rglob(".imgflow-*")) == []
    with sqlite3.connect(out / "catalog.sqlite") as connection:
        counts = dict(
            connection.execute("SELECT status, count(*) FROM images GROUP BY 1")
        )
    assert counts == {"done": IMAGES, "rejected": 1}
