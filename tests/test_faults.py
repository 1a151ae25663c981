"""Fault injection under every model: crashes, hangs and I/O errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from PIL import Image

from conftest import jpeg_bytes, quadrant_pixels
from faults import FaultyPipeline
from imgflow.config import parse_config
from imgflow.errors import Reason, Status
from imgflow.executors.base import RetryPolicy, RunControl
from imgflow.runner import RunRequest, collect_sources, execute

CONFIG = parse_config({"variants": {"thumb": {"size": 48}}})
WORKER_MODELS = ["parallel", "pipelined", "hybrid"]


def _inputs(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True)
    for index, name in enumerate(names):
        image = Image.fromarray(quadrant_pixels(120 + index, 90))
        (folder / f"{name}.jpg").write_bytes(jpeg_bytes(image))
    return folder


def _run(tmp_path: Path, names: list[str], mode: str, time_limit: float | None = None):
    inputs = _inputs(tmp_path / "in", names)
    markers = tmp_path / "markers"
    markers.mkdir()
    out = tmp_path / "out"
    request = RunRequest(
        inputs=[str(inputs)],
        out_dir=out,
        config=CONFIG,
        mode=mode,
        workers=2,
        time_limit=time_limit,
    )
    sources, issues = collect_sources(request)
    control = RunControl(retry=RetryPolicy(attempts=3, base_delay=0.05))
    pipeline = FaultyPipeline(CONFIG, out, markers=markers)
    summary = execute(request, sources, issues, control=control, pipeline=pipeline)
    return {Path(r.source.path).stem: r for r in summary.results}, summary


@pytest.mark.parametrize("mode", ["sequential", *WORKER_MODELS])
def test_io_error_retried(mode: str, tmp_path: Path) -> None:
    """An I/O error on the first attempt passes on the retry."""
    results, summary = _run(tmp_path, ["ioerror_once", "good_a", "good_b"], mode)
    assert results["ioerror_once"].status is Status.DONE
    assert results["ioerror_once"].attempts == 2
    assert results["good_a"].attempts == 1
    assert summary.counts == {"done": 3}


@pytest.mark.parametrize("mode", WORKER_MODELS)
def test_worker_crash_retried(mode: str, tmp_path: Path) -> None:
    """A worker that dies mid-image costs one attempt; the retry succeeds."""
    results, summary = _run(
        tmp_path, ["crash_once", "good_a", "good_b", "good_c"], mode
    )
    assert results["crash_once"].status is Status.DONE
    assert summary.counts == {"done": 4}
    if mode != "hybrid":
        # Hybrid re-runs a lost batch one image at a time without charging
        # an attempt, because it cannot tell which member killed the worker.
        assert results["crash_once"].attempts == 2


@pytest.mark.parametrize("mode", WORKER_MODELS)
def test_always_crashing_image_dead(
    mode: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An image that kills its worker every time ends dead after three attempts."""
    caplog.set_level(logging.INFO, logger="imgflow.runner")
    results, summary = _run(tmp_path, ["crash_always", "good_a"], mode)
    dead = results["crash_always"]
    assert dead.status is Status.FAILED
    assert dead.reason is Reason.WORKER_LOST
    assert dead.attempts == 3
    assert results["good_a"].status is Status.DONE
    # A lost worker is unexpected, so its image's record is an error.
    levels = {
        record.source: record.levelno
        for record in caplog.records
        if getattr(record, "event", None) == "image"
    }
    assert levels[dead.source.text] == logging.ERROR
    assert levels[results["good_a"].source.text] == logging.INFO


@pytest.mark.parametrize("mode", ["parallel", "pipelined"])
def test_hang_ended_by_time_limit(mode: str, tmp_path: Path) -> None:
    """A stuck image is ended at the time limit and passes on the retry."""
    results, summary = _run(tmp_path, ["hang_once", "good_a"], mode, time_limit=3.0)
    assert results["hang_once"].status is Status.DONE
    assert results["hang_once"].attempts == 2
    assert summary.counts == {"done": 2}


def test_rejection_never_retried(tmp_path: Path) -> None:
    """A deterministic rejection is reported after a single attempt."""
    inputs = _inputs(tmp_path / "in", ["good"])
    (inputs / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    request = RunRequest(inputs=[str(inputs)], out_dir=tmp_path / "out", config=CONFIG,
                         mode="sequential")  # fmt: skip
    sources, issues = collect_sources(request)
    summary = execute(request, sources, issues)
    cut = next(r for r in summary.results if r.source.path.endswith("cut.png"))
    assert cut.status is Status.REJECTED
    assert cut.attempts == 1


@pytest.mark.parametrize("mode", ["sequential", *WORKER_MODELS])
@pytest.mark.parametrize("stage", ["load", "describe", "store"])
def test_io_error_in_each_stage_retried(mode: str, stage: str, tmp_path: Path) -> None:
    """An I/O error in any stage is retried, and the image then completes."""
    name = f"ioerror_{stage}_once"
    results, summary = _run(tmp_path, [name, "good_a"], mode)
    assert results[name].status is Status.DONE
    assert results[name].attempts == 2
    assert summary.counts == {"done": 2}


# In these models every stage runs in a worker process, so a crash or a hang
# in any stage costs only that worker.
WHOLE_IMAGE_MODELS = ["parallel", "hybrid"]


@pytest.mark.parametrize("mode", WHOLE_IMAGE_MODELS)
@pytest.mark.parametrize("stage", ["load", "describe", "store"])
def test_crash_in_each_stage_recovered(mode: str, stage: str, tmp_path: Path) -> None:
    """A worker that dies in any stage is replaced and the image completes."""
    name = f"crash_{stage}_once"
    results, summary = _run(tmp_path, [name, "good_a"], mode)
    assert results[name].status is Status.DONE
    assert summary.counts == {"done": 2}


@pytest.mark.parametrize("mode", WHOLE_IMAGE_MODELS)
@pytest.mark.parametrize("stage", ["load", "store"])
def test_hang_in_each_stage_ended(mode: str, stage: str, tmp_path: Path) -> None:
    """A stage that hangs is ended by the time limit and the image completes."""
    name = f"hang_{stage}_once"
    results, summary = _run(tmp_path, [name, "good_a"], mode, time_limit=3.0)
    assert results[name].status is Status.DONE
    assert summary.counts == {"done": 2}


@pytest.mark.parametrize("stage", ["load", "describe", "store"])
def test_pipelined_thread_hang_ended(stage: str, tmp_path: Path) -> None:
    """A reader or writer thread stuck past the time limit is given up and replaced.

    The stuck thread sleeps on in the background; its image is retried on
    a fresh thread and completes.
    """
    name = f"hang_{stage}_once"
    results, summary = _run(
        tmp_path, [name, "good_a", "good_b"], "pipelined", time_limit=2.0
    )
    assert results[name].status is Status.DONE
    assert results[name].attempts == 2
    assert summary.counts == {"done": 3}
