"""Ordered output, bounded intake, graceful stop and the auto mode choice."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from conftest import jpeg_bytes, quadrant_pixels
from imgflow.config import PipelineConfig, parse_config
from imgflow.errors import Status
from imgflow.executors import RunControl, auto, make_executor
from imgflow.executors.auto import choose_mode
from imgflow.executors.base import Feeder
from imgflow.pipeline import Pipeline
from imgflow.records import ImageResult, Source
from imgflow.runner import RunRequest, collect_sources, execute

MODELS = ["sequential", "parallel", "pipelined", "hybrid"]
SMALL_CONFIG = {"variants": {"thumb": {"size": 64}}}


@pytest.fixture(scope="module")
def mixed_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One slow large photo first, then small ones that finish sooner."""
    folder = tmp_path_factory.mktemp("mixed")
    big = Image.fromarray(quadrant_pixels(3000, 2000))
    (folder / "a_big.png").write_bytes(b"")
    big.save(folder / "a_big.png", compress_level=1)
    for index in range(10):
        small = Image.fromarray(quadrant_pixels(200 + index, 150))
        (folder / f"b_small_{index:02}.jpg").write_bytes(jpeg_bytes(small))
    return folder


def _many_sources(folder: Path, count: int) -> list[Source]:
    """More sources than any model keeps in flight, cycling over the small files."""
    paths = sorted(str(p) for p in folder.glob("b_small_*.jpg"))
    return [Source(index, paths[index % len(paths)]) for index in range(count)]


def _request(inputs: Path, out: Path, mode: str, **options: object) -> RunRequest:
    return RunRequest(
        inputs=[str(inputs)],
        out_dir=out,
        config=parse_config(SMALL_CONFIG),
        mode=mode,
        workers=2,
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("mode", MODELS)
def test_ordered_commits_in_input_order(
    mode: str, mixed_inputs: Path, tmp_path: Path
) -> None:
    """With ordered output, results reach the catalog in input order."""
    request = _request(
        mixed_inputs, tmp_path / "out", mode, ordered=True, order_window=4
    )
    sources, issues = collect_sources(request)
    seen: list[int] = []
    summary = execute(
        request, sources, issues, on_result=lambda r: seen.append(r.source.index)
    )
    assert seen == list(range(len(sources)))
    assert summary.counts == {"done": 11}


def _done(source: Source) -> ImageResult:
    return ImageResult(source=source, status=Status.DONE)


def test_feeder_window_bounds_reorder_buffer() -> None:
    """No source starts more than max_ahead places past the oldest unfinished one."""
    sources = [Source(index, f"/x/{index}") for index in range(10)]
    feeder = Feeder(sources, RunControl(max_ahead=3))
    admitted = [feeder.admit() for _ in range(3)]
    assert [s.index for s in admitted if s] == [0, 1, 2]
    assert feeder.admit() is None
    feeder.complete(_done(sources[1]))
    assert feeder.admit() is None
    feeder.complete(_done(sources[0]))
    assert feeder.admit() == sources[3]
    assert feeder.admit() == sources[4]
    assert feeder.admit() is None


@pytest.mark.parametrize("mode", ["parallel", "pipelined", "hybrid"])
def test_sources_pulled_lazily(mode: str, mixed_inputs: Path, tmp_path: Path) -> None:
    """An executor keeps a bounded number of sources, not the whole input."""
    paths = sorted(str(p) for p in mixed_inputs.glob("b_small_*.jpg"))
    total = 200
    pulled = 0

    def sources() -> Iterator[Source]:
        nonlocal pulled
        for index in range(total):
            pulled += 1
            yield Source(index, paths[index % len(paths)])

    executor = make_executor(mode, 2)
    pipeline = Pipeline(parse_config(SMALL_CONFIG), tmp_path / "out")
    stream = executor.run(pipeline, sources(), RunControl())
    first: ImageResult = next(stream)
    assert first.status.value == "done"
    assert pulled < 60
    remaining = sum(1 for _ in stream)
    assert remaining == total - 1


@pytest.mark.parametrize("mode", MODELS)
def test_stop_finishes_in_flight_only(
    mode: str, mixed_inputs: Path, tmp_path: Path
) -> None:
    """A stop request ends intake; every source is either done or listed as not processed."""
    out = tmp_path / "out"
    request = _request(mixed_inputs, out, mode)
    sources = _many_sources(mixed_inputs, 80)
    issues: list = []
    control = RunControl()

    def stop_once(_result: ImageResult) -> None:
        if not control.stopping:
            control.request_stop()

    summary = execute(request, sources, issues, control=control, on_result=stop_once)
    done = {r.source.index for r in summary.results}
    missing = {s.index for s in summary.not_processed}
    assert done
    assert missing
    assert done | missing == {s.index for s in sources}
    assert not done & missing
    assert not summary.all_done
    assert list(out.rglob(".imgflow-*")) == []


def _write_jpegs(folder: Path, count: int, size: tuple[int, int]) -> list[Source]:
    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for index in range(count):
        path = folder / f"p{index}.jpg"
        path.write_bytes(jpeg_bytes(Image.fromarray(quadrant_pixels(*size))))
        sources.append(Source(index, str(path), size=path.stat().st_size))
    return sources


def test_auto_few_images_sequential(tmp_path: Path) -> None:
    """A handful of images runs sequentially."""
    sources = _write_jpegs(tmp_path, 2, (64, 48))
    choice = choose_mode(sources, PipelineConfig(), 2)
    assert choice.mode == "sequential"
    assert "2 images" in choice.reason


def test_auto_two_images_use_forked_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers forked ahead cost little, so two images already run on them."""
    sources = _write_jpegs(tmp_path, 2, (64, 48))
    monkeypatch.setattr(auto, "reserved_count", lambda: 2)
    assert choose_mode(sources, PipelineConfig(), 2).mode != "sequential"
    single = choose_mode(sources[:1], PipelineConfig(), 2)
    assert single.mode == "sequential"
    assert "fewer than 2" in single.reason


def test_auto_one_worker_sequential(tmp_path: Path) -> None:
    """One worker always means sequential."""
    sources = _write_jpegs(tmp_path, 8, (64, 48))
    assert choose_mode(sources, PipelineConfig(), 1).mode == "sequential"


@pytest.mark.parametrize(("count", "workers"), [(2, 2), (8, 1)])
def test_auto_time_limit_needs_workers(
    tmp_path: Path, count: int, workers: int
) -> None:
    """With a time limit, auto picks a worker model where it would run sequentially."""
    sources = _write_jpegs(tmp_path, count, (64, 48))
    choice = choose_mode(sources, PipelineConfig(), workers, time_limit=0.5)
    assert choice.mode == "parallel"
    assert "time limit (0.5 s per image)" in choice.reason


def test_auto_small_jpegs_hybrid(tmp_path: Path) -> None:
    """Many small baseline JPEGs choose hybrid, with the count in the reason."""
    sources = _write_jpegs(tmp_path, 8, (64, 48))
    choice = choose_mode(sources, PipelineConfig(), 2)
    assert choice.mode == "hybrid"
    assert "8 of 8" in choice.reason


def test_auto_large_images_parallel(tmp_path: Path) -> None:
    """Images too large for the small batches choose parallel."""
    sources = _write_jpegs(tmp_path, 6, (1600, 1200))
    choice = choose_mode(sources, PipelineConfig(), 2)
    assert choice.mode == "parallel"
    assert "0 of 6" in choice.reason


@pytest.mark.parametrize("mode", MODELS)
def test_abandon_leaves_no_temporary_files(
    mode: str, mixed_inputs: Path, tmp_path: Path
) -> None:
    """A second stop request abandons in-flight images and cleans up after them."""
    out = tmp_path / "out"
    request = _request(mixed_inputs, out, mode)
    sources, issues = collect_sources(request)
    control = RunControl()

    def abandon(_result: ImageResult) -> None:
        control.request_stop()
        control.request_stop()

    summary = execute(request, sources, issues, control=control, on_result=abandon)
    assert control.abandoned
    assert summary.not_processed
    assert len(summary.results) + len(summary.not_processed) == len(sources)
    assert list(out.rglob(".imgflow-*")) == []


class _InterruptedPipeline(Pipeline):
    """Abandons the run at its second image, then gets a further interrupt."""

    control: RunControl

    def process(self, source: Source, *, engine: str = "vips") -> ImageResult:
        if source.index == 1:
            self.control.request_stop()
            self.control.request_stop()
            raise KeyboardInterrupt
        return super().process(source, engine=engine)


def test_interrupt_after_abandon_propagates(tmp_path: Path) -> None:
    """A KeyboardInterrupt once the run is abandoned stops it, after recording."""
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(3):
        photo = jpeg_bytes(Image.fromarray(quadrant_pixels(64 + index, 48)))
        (folder / f"p{index}.jpg").write_bytes(photo)
    request = RunRequest(
        inputs=[str(folder)], out_dir=tmp_path / "out", config=PipelineConfig(),
        mode="sequential",
    )  # fmt: skip
    sources, issues = collect_sources(request)
    control = RunControl()
    pipeline = _InterruptedPipeline(request.config, request.out_dir)
    pipeline.control = control
    with pytest.raises(KeyboardInterrupt):
        execute(request, sources, issues, control=control, pipeline=pipeline)
    # The finished image was recorded and the rest left pending.
    with sqlite3.connect(tmp_path / "out" / "catalog.sqlite") as connection:
        states = sorted(
            row[0] for row in connection.execute("SELECT status FROM images")
        )
    assert states == ["done", "pending", "pending"]


def test_auto_reason_names_workers_started(tmp_path: Path) -> None:
    """The reason gives the workers the run starts, not the larger request."""
    _write_jpegs(tmp_path / "in", 6, (1600, 1200))
    request = RunRequest(
        inputs=[str(tmp_path / "in")],
        out_dir=tmp_path / "out",
        config=PipelineConfig(),
        mode="auto",
        workers=64,
    )
    sources, issues = collect_sources(request)
    summary = execute(request, sources, issues)
    assert summary.workers == 6
    assert summary.mode_reason is not None
    assert "on 6 worker processes" in summary.mode_reason
