"""The dead-letter queue: list, show, retry and purge."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import imgflow_process, jpeg_bytes, quadrant_pixels
from faults import FaultyPipeline
from imgflow.catalog import SQLiteCatalog
from imgflow.cli import main
from imgflow.config import PipelineConfig, parse_config
from imgflow.errors import Status
from imgflow.executors.base import RetryPolicy, RunControl
from imgflow.pipeline import Loaded, Pipeline
from imgflow.records import ImageResult
from imgflow.runner import RunRequest, RunSummary, collect_sources, execute
from imgflow.stages.transform import Rendered

CONFIG = parse_config({"variants": {"thumb": {"size": 48}}})
# A large WebP variant makes each image slow enough for a signal sent after
# the first result to land while most images are still unprocessed.
SLOW_CONFIG = parse_config(
    {"variants": {"thumb": {"size": 48}, "web": {"size": 1200, "format": "webp"}}}
)


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
    out = tmp_path / "out"
    summary = _run_with_faults(folder, out, tmp_path / "markers")
    assert summary.counts == {"done": 1, "failed": 1}
    return out, folder / "ioerror_once.jpg"


def _run_with_faults(folder: Path, out: Path, markers: Path) -> RunSummary:
    """Run `folder` once, letting the faults its file names ask for happen."""
    markers.mkdir()
    request = RunRequest(
        inputs=[str(folder)], out_dir=out, config=CONFIG, mode="sequential"
    )
    sources, issues = collect_sources(request)
    return execute(
        request,
        sources,
        issues,
        control=RunControl(retry=RetryPolicy(attempts=1)),
        pipeline=FaultyPipeline(CONFIG, out, markers=markers),
    )


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


def test_retry_stored_config_no_warnings(dead_run: tuple[Path, Path]) -> None:
    """The stored configuration's filled-in defaults do not warn on retry."""
    out, _dead = dead_run
    result = _cli("dlq", "retry", "--out", str(out), "--mode", "sequential")
    assert result.exit_code == 0, result.text
    assert "has no effect" not in result.text


def test_retry_of_deleted_source_says_it_stays(dead_run: tuple[Path, Path]) -> None:
    """A dead image whose file is gone stays queued, and the retry prints what to do."""
    out, dead = dead_run
    dead.unlink()
    result = _cli("dlq", "retry", "--out", str(out), "--mode", "sequential")
    assert result.exit_code == 1
    assert "1 dead image could not be read" in " ".join(result.text.split())
    assert "imgflow dlq purge" in result.text
    assert str(dead) in _cli("dlq", "list", "--out", str(out), "--json").output


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


def test_purge_unknown_source_exits_2(dead_run: tuple[Path, Path]) -> None:
    """purge names a source not in the queue, drops the others, and exits 2."""
    out, dead = dead_run
    result = _cli("dlq", "purge", "--out", str(out), "unknown.jpg", str(dead))
    assert result.exit_code == 2
    assert "Purged 1 dead image" in result.text
    assert "unknown.jpg is not in the dead-letter queue" in result.text


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


class FailingPipeline(Pipeline):
    """Raises a chosen exception in the render of the files named in `failures`."""

    def __init__(
        self, config: PipelineConfig, out_dir: Path, failures: dict[str, Exception]
    ) -> None:
        super().__init__(config, out_dir)
        self.failures = failures

    def render(
        self, loaded: Loaded, data: bytes, *, engine: str = "vips"
    ) -> list[Rendered]:
        error = self.failures.get(Path(loaded.source.path).name)
        if error is not None:
            raise error
        return super().render(loaded, data, engine=engine)


def _dead_queue(
    tmp_path: Path,
    count: int,
    size: tuple[int, int] = (120, 80),
    config: PipelineConfig = CONFIG,
) -> tuple[Path, list[str]]:
    """Write `count` photos and run them so that each fails with an I/O error.

    No image gets a second attempt, so each one lands in the dead-letter
    queue. Returns the output folder and the dead sources, in queue order.
    """
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(count):
        image = Image.fromarray(quadrant_pixels(*size))
        (folder / f"img_{index:03}.jpg").write_bytes(jpeg_bytes(image))
    out = tmp_path / "out"
    request = RunRequest(
        inputs=[str(folder)], out_dir=out, config=config, mode="sequential"
    )
    sources, issues = collect_sources(request)
    failures: dict[str, Exception] = {
        Path(source.path).name: OSError(5, "Input/output error") for source in sources
    }
    summary = execute(
        request,
        sources,
        issues,
        control=RunControl(retry=RetryPolicy(attempts=1)),
        pipeline=FailingPipeline(config, out, failures),
    )
    assert summary.counts == {"failed": count}
    return out, _queue(out)


def _queue(out: Path) -> list[str]:
    catalog = SQLiteCatalog(out / "catalog.sqlite")
    try:
        return [row["source"] for row in catalog.dead_letters()]
    finally:
        catalog.close()


def _queue_rows(out: Path) -> dict[str, dict[str, Any]]:
    catalog = SQLiteCatalog(out / "catalog.sqlite")
    try:
        return {row["source"]: row for row in catalog.dead_letters()}
    finally:
        catalog.close()


def _retry_and_stop(
    out: Path,
    *,
    stop_after: int,
    stop_requests: int = 1,
    mode: str = "sequential",
    failures: dict[str, Exception] | None = None,
) -> RunSummary:
    """Retry the queue as `imgflow dlq retry` does, stopping after some results.

    `stop_requests` is 1 to let in-flight images finish, 2 to abandon them.
    """
    request = RunRequest(
        inputs=_queue(out), out_dir=out, config=CONFIG, mode=mode, workers=2
    )
    sources, issues = collect_sources(request)
    control = RunControl(retry=RetryPolicy(attempts=1))
    seen = 0

    def stop(_result: ImageResult) -> None:
        nonlocal seen
        seen += 1
        if seen == stop_after:
            for _ in range(stop_requests):
                control.request_stop()

    return execute(
        request,
        sources,
        issues,
        control=control,
        on_result=stop,
        pipeline=FailingPipeline(CONFIG, out, failures or {}),
    )


def test_stopped_retry_keeps_unprocessed(tmp_path: Path) -> None:
    """A retry stopped part-way leaves every image it did not process queued."""
    out, dead = _dead_queue(tmp_path, 6)
    summary = _retry_and_stop(out, stop_after=2)
    retried = [result.source.path for result in summary.results]
    not_processed = [source.path for source in summary.not_processed]
    assert summary.counts == {"done": 2}
    assert retried == dead[:2]
    assert not_processed == dead[2:]
    assert _queue(out) == dead[2:]

    listed = _cli("dlq", "list", "--out", str(out), "--json")
    assert [json.loads(line)["source"] for line in listed.output.splitlines()] == (
        dead[2:]
    )
    details = _cli("dlq", "show", "--out", str(out), dead[2])
    assert details.exit_code == 0
    assert "reason: io_error" in details.text

    again = _cli("dlq", "retry", "--out", str(out), "--mode", "sequential", "-q")
    assert again.exit_code == 0
    assert _queue(out) == []
    assert len(list((out / "thumb").glob("img_*.jpg"))) == 6


def test_failed_retry_keeps_new_reason(tmp_path: Path) -> None:
    """An image that fails again stays queued with the reason of the new failure."""
    out, dead = _dead_queue(tmp_path, 4)
    first = Path(dead[0]).name
    summary = _retry_and_stop(
        out, stop_after=2, failures={first: RuntimeError("decoder state lost")}
    )
    assert summary.counts == {"failed": 1, "done": 1}
    rows = _queue_rows(out)
    reasons = {source: row["reason"] for source, row in rows.items()}
    assert reasons == {
        dead[0]: "internal_error",
        dead[2]: "io_error",
        dead[3]: "io_error",
    }
    assert rows[dead[0]]["message"] == "RuntimeError: decoder state lost"


def test_abandoned_retry_keeps_in_flight(tmp_path: Path) -> None:
    """A second stop request abandons in-flight images, and they stay queued."""
    out, dead = _dead_queue(tmp_path, 24, size=(1200, 900))
    summary = _retry_and_stop(out, stop_after=1, stop_requests=2, mode="parallel")
    done = {r.source.path for r in summary.results if r.status is Status.DONE}
    not_processed = {source.path for source in summary.not_processed}
    assert done
    assert not_processed
    assert done | not_processed == set(dead)
    assert set(_queue(out)) == not_processed

    again = _cli("dlq", "retry", "--out", str(out), "--mode", "sequential", "-q")
    assert again.exit_code == 0
    assert _queue(out) == []


def _done_sources(out: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(out / "catalog.sqlite")) as connection:
        rows = connection.execute("SELECT source FROM images WHERE status = 'done'")
        return {row[0] for row in rows}


@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name
)
def test_signalled_retry_keeps_rest(tmp_path: Path, signum: signal.Signals) -> None:
    """`dlq retry` stopped by a signal after its first result keeps the rest queued."""
    out, dead = _dead_queue(tmp_path, 24, size=(1200, 900), config=SLOW_CONFIG)
    with imgflow_process(
        "dlq", "retry", "--out", str(out), "--mode", "sequential", "-q"
    ) as process:
        deadline = time.monotonic() + 60
        while not _done_sources(out) and process.poll() is None:
            assert time.monotonic() < deadline, "no image was retried within 60 s"
            time.sleep(0.005)
        process.send_signal(signum)
        assert process.stderr is not None
        errors = process.stderr.read()
        process.wait(timeout=120)

    expected_code = -signal.SIGKILL if signum == signal.SIGKILL else 1
    assert process.returncode == expected_code, errors
    done = _done_sources(out)
    assert done
    assert len(done) < len(dead), "the retry finished before the signal arrived"
    assert set(_queue(out)) == set(dead) - done

    again = _cli("dlq", "retry", "--out", str(out), "--mode", "sequential", "-q")
    assert again.exit_code == 0
    assert _queue(out) == []


def test_retry_names_not_utf8(tmp_path: Path) -> None:
    """Dead images named with undecodable bytes or backslashes are retried."""
    folder = tmp_path / "in"
    folder.mkdir()
    photo = jpeg_bytes(Image.fromarray(quadrant_pixels(120, 80)))
    # The second name is the text form of the first, so both must stay apart.
    for raw in (b"ioerror_caf\xe9_load_once.jpg", b"ioerror_caf\\xe9_load_once.jpg"):
        with open(os.path.join(os.fsencode(folder), raw), "wb") as handle:
            handle.write(photo)
    out = tmp_path / "out"
    summary = _run_with_faults(folder, out, tmp_path / "markers")
    assert summary.counts == {"failed": 2}

    result = _cli("dlq", "retry", "--out", str(out), "--mode", "sequential", "-q")
    assert result.exit_code == 0, result.output
    assert "empty" in _cli("dlq", "list", "--out", str(out)).text
    with sqlite3.connect(out / "catalog.sqlite") as connection:
        rows = connection.execute("SELECT source, status FROM images").fetchall()
    assert len(rows) == 2
    assert {status for _, status in rows} == {"done"}
