"""Hybrid scheduling: small work first, one shared pool, engines by route."""

from __future__ import annotations

import io
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
import pyvips
from PIL import Image, ImageCms

from conftest import jpeg_bytes, quadrant_pixels
from imgflow import samples
from imgflow.config import parse_config
from imgflow.errors import Rejected
from imgflow.executors.base import RunControl
from imgflow.executors.hybrid import (
    DEFAULT_BATCH_SIZE,
    HybridExecutor,
    _Backlog,
)
from imgflow.executors.routing import peek_header, relative_cost
from imgflow.pipeline import Pipeline
from imgflow.records import Header, ImageResult, Source
from imgflow.runner import RunRequest, collect_sources, execute
from imgflow.stages.validate import read_header, sniff_format

CONFIG = parse_config({"variants": {"thumb": {"size": 64}}})


def _sources(count: int, start: int = 0) -> list[Source]:
    return [Source(index=i, path=f"/in/{i}.jpg") for i in range(start, start + count)]


def _backlog(
    engine: str,
    batch_size: int,
    sources: Sequence[Source] = (),
    costs: Sequence[float] | None = None,
) -> _Backlog:
    backlog = _Backlog(engine, batch_size)
    for position, source in enumerate(sources):
        backlog.push(source, costs[position] if costs else 0.0)
    return backlog


def test_backlog_order_cost_then_arrival() -> None:
    backlog = _backlog("vips", 1, _sources(5), costs=[1.0, 9.0, 1.0, 5.0, 9.0])
    assert [s.index for s in backlog.take(5)] == [1, 4, 3, 0, 2]
    assert len(backlog) == 0


def test_backlog_clear_includes_reruns() -> None:
    backlog = _backlog("vips", 1, _sources(2))
    backlog.solo.extend(_sources(1, start=7))
    assert sorted(s.index for s in backlog.clear()) == [0, 1, 7]
    assert len(backlog) == 0
    assert not backlog.solo


def test_one_worker_small_batch_first() -> None:
    executor = HybridExecutor(1, batch_size=4)
    small = _backlog("pillow", 4, _sources(5))
    large = _backlog("vips", 1, _sources(2, start=10))
    backlog, batch = executor._next_task(small, large, more_coming=True)
    assert backlog is small
    assert [s.index for s in batch] == [0, 1, 2, 3]


def test_two_workers_large_starts_early() -> None:
    """With two workers, one takes the costliest large image at once."""
    executor = HybridExecutor(2, batch_size=4)
    small = _backlog("pillow", 4, _sources(5))
    large = _backlog("vips", 1, _sources(2, start=10), costs=[2e6, 5e7])
    backlog, batch = executor._next_task(small, large, True, large_running=0)
    assert backlog is large
    assert [s.index for s in batch] == [11]
    # The other worker is kept for the small photos that wait.
    backlog, batch = executor._next_task(small, large, True, large_running=1)
    assert backlog is small
    assert [s.index for s in batch] == [0, 1, 2, 3]


def test_large_takes_all_workers_without_small() -> None:
    executor = HybridExecutor(2, batch_size=4)
    small = _backlog("pillow", 4)
    large = _backlog("vips", 1, _sources(2, start=10))
    backlog, batch = executor._next_task(small, large, True, large_running=1)
    assert backlog is large
    assert [s.index for s in batch] == [10]


def test_partial_batch_waits_for_large_work() -> None:
    """A partial small batch yields to a waiting large image while more may come."""
    executor = HybridExecutor(2, batch_size=4)
    small = _backlog("pillow", 4, _sources(2))
    large = _backlog("vips", 1, _sources(1, start=10))
    backlog, batch = executor._next_task(small, large, True, large_running=1)
    assert backlog is large
    assert [s.index for s in batch] == [10]


def test_partial_batch_sent_when_idle() -> None:
    """With nothing else to run, a partial batch goes out instead of waiting."""
    executor = HybridExecutor(2, batch_size=4)
    small = _backlog("pillow", 4, _sources(2))
    large = _backlog("vips", 1)
    backlog, batch = executor._next_task(small, large, more_coming=True)
    assert backlog is small
    assert len(batch) == 2


def test_solo_reruns_come_first() -> None:
    executor = HybridExecutor(2, batch_size=4)
    small = _backlog("pillow", 4, _sources(4))
    large = _backlog("vips", 1)
    large.solo.extend(_sources(1, start=20))
    backlog, batch = executor._next_task(small, large, True, large_running=1)
    assert backlog is large
    assert [s.index for s in batch] == [20]


def test_nothing_to_run() -> None:
    executor = HybridExecutor(2)
    assert executor._next_task(_Backlog("pillow", 4), _Backlog("vips", 1), True) is None


@pytest.mark.parametrize("small_engine", ["vips", "pillow"])
def test_engines_follow_route(tmp_path: Path, small_engine: str) -> None:
    """Small baseline JPEGs take the small engine and large ones libvips."""
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(6):
        small = Image.fromarray(quadrant_pixels(320 + index, 240))
        (folder / f"small_{index}.jpg").write_bytes(jpeg_bytes(small))
    for index in range(2):
        large = Image.fromarray(quadrant_pixels(1000 + index, 800))
        (folder / f"large_{index}.jpg").write_bytes(jpeg_bytes(large))
    request = RunRequest(inputs=[str(folder)], out_dir=tmp_path / "out", config=CONFIG)
    sources, _ = collect_sources(request)
    executor = HybridExecutor(2, small_engine=small_engine)
    pipeline = Pipeline(CONFIG, tmp_path / "out")
    results = list(executor.run(pipeline, sources, RunControl()))
    engines = {Path(r.source.path).stem: r.engine for r in results}
    assert [r.status.value for r in results] == ["done"] * 8
    for index in range(6):
        assert engines[f"small_{index}"] == small_engine
    for index in range(2):
        assert engines[f"large_{index}"] == "vips"


def test_unknown_small_engine_raises() -> None:
    with pytest.raises(ValueError, match="small_engine"):
        HybridExecutor(2, small_engine="magick")


def _routing_fields(header: Header | None) -> tuple[object, ...] | None:
    if header is None:
        return None
    return (
        header.format,
        header.width,
        header.height,
        header.bands,
        header.bit_depth,
        header.pages,
        header.orientation,
        header.progressive,
        header.interpretation,
        header.has_profile,
    )


def _assert_peek_matches_libvips(path: Path) -> None:
    data = path.read_bytes()
    fmt = sniff_format(data[:256])
    assert fmt is not None
    try:
        full = read_header(data, fmt)
    except Rejected:
        full = None
    peeked = peek_header(str(path))
    if full is None:
        # Routing may still read what libvips rejects: the worker decides.
        return
    assert _routing_fields(peeked) == _routing_fields(full), path.name


def _header(width: int, height: int, *, progressive: bool = False) -> Header:
    return Header("jpeg", width, height, 3, 8, 1, 1, progressive)


def test_relative_cost_order() -> None:
    assert relative_cost(_header(8000, 6000)) > relative_cost(_header(4000, 3000))
    assert relative_cost(_header(4000, 3000, progressive=True)) > relative_cost(
        _header(4000, 3000)
    )
    # Unreadable headers cost nothing, so they never hold back real work.
    assert relative_cost(None) == 0.0


def test_peek_header_kinds_of_jpeg(write_file) -> None:
    """The routing header reads like the one validation reads, kind by kind."""
    colour = Image.fromarray(quadrant_pixels(120, 80))
    exif = Image.Exif()
    exif[0x0112] = 6
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    cases = {
        "baseline.jpg": jpeg_bytes(colour),
        "progressive.jpg": jpeg_bytes(colour, progressive=True),
        "grey.jpg": jpeg_bytes(colour.convert("L")),
        "cmyk.jpg": jpeg_bytes(colour.convert("CMYK")),
        "profile.jpg": jpeg_bytes(colour, icc_profile=icc),
        "rotated.jpg": jpeg_bytes(colour, exif=exif),
    }
    for name, data in cases.items():
        _assert_peek_matches_libvips(write_file(name, data))


def test_peek_header_other_formats(write_file) -> None:
    png = io.BytesIO()
    Image.fromarray(quadrant_pixels(30, 20)).save(png, "PNG")
    assert peek_header(str(write_file("a.png", png.getvalue()))).format == "png"
    assert peek_header(str(write_file("notes.jpg", b"not an image"))) is None
    assert peek_header(str(write_file("cut.jpg", b"\xff\xd8\xff"))) is None


def test_peek_header_corpus_jpegs(corpus: Path) -> None:
    """Every JPEG of the corpus, malformed EXIF and MPO included."""
    jpegs = [
        path
        for path in sorted(corpus.rglob("*"))
        if path.is_file() and sniff_format(path.read_bytes()[:256]) == "jpeg"
    ]
    assert jpegs
    for path in jpegs:
        _assert_peek_matches_libvips(path)


def _claiming_size(data: bytes, width: int, height: int) -> bytes:
    """Return a baseline JPEG whose frame header claims another size."""
    frame = data.index(b"\xff\xc0")
    size = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return data[: frame + 5] + size + data[frame + 9 :]


def _peek_in_thread(path: Path) -> list[Header | None]:
    """Run peek_header on a thread and fail if it does not return promptly."""
    found: list[Header | None] = []
    thread = threading.Thread(target=lambda: found.append(peek_header(str(path))))
    thread.daemon = True
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), f"peek_header blocked on {path.name}"
    return found


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_peek_header_skips_fifo(tmp_path: Path) -> None:
    """A FIFO named like a photo is not opened for a blocking read."""
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    assert _peek_in_thread(fifo) == [None]


def test_peek_header_pixel_bomb(write_file) -> None:
    """A header past Pillow's own bomb limit routes to libvips, not an error."""
    small = jpeg_bytes(Image.fromarray(quadrant_pixels(80, 60)))
    bomb = write_file("bomb.jpg", _claiming_size(small, 30000, 30000))
    assert _peek_in_thread(bomb) == [None]


def _small_photos(folder: Path, count: int) -> bytes:
    """Write `count` copies of one 320x240 JPEG into a new folder; return its bytes."""
    folder.mkdir()
    small = jpeg_bytes(Image.fromarray(quadrant_pixels(320, 240)))
    for index in range(count):
        (folder / f"small_{index:02}.jpg").write_bytes(small)
    return small


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_hybrid_run_with_fifo_and_bomb(tmp_path: Path) -> None:
    """Hybrid rejects a pixel bomb and a FIFO by name and finishes the rest."""
    folder = tmp_path / "in"
    small = _small_photos(folder, 4)
    (folder / "bomb.jpg").write_bytes(_claiming_size(small, 30000, 30000))
    os.mkfifo(folder / "pipe.jpg")
    request = RunRequest(
        inputs=[str(folder)],
        out_dir=tmp_path / "out",
        config=CONFIG,
        mode="hybrid",
        workers=2,
        retries=0,
    )
    sources, issues = collect_sources(request)
    summaries = []
    thread = threading.Thread(
        target=lambda: summaries.append(execute(request, sources, issues)),
        daemon=True,
    )
    thread.start()
    thread.join(120)
    assert summaries, "the hybrid run did not finish"
    reasons = {
        Path(r.source.path).name: r.reason.value if r.reason else None
        for r in summaries[0].results
    }
    assert reasons["bomb.jpg"] == "too_many_pixels"
    assert reasons["pipe.jpg"] == "not_a_file"
    assert [reasons[f"small_{index:02}.jpg"] for index in range(4)] == [None] * 4


def _damaged_jpegs() -> dict[str, bytes]:
    """Small baseline JPEGs with damaged scan data and an intact end marker."""
    intact = jpeg_bytes(Image.fromarray(quadrant_pixels(400, 300)))
    scan = intact.index(b"\xff\xda") + 20
    end = len(intact) - 2
    inverted = bytearray(intact)
    for offset in range(scan + 100, scan + 600):
        inverted[offset] ^= 0xFF
    zeroed = bytearray(intact)
    zeroed[scan + 100 : scan + 2000] = bytes(1900)
    cut = intact[: scan + (end - scan) * 3 // 4] + intact[end:]
    return {
        "intact.jpg": intact,
        "inverted.jpg": bytes(inverted),
        "zeroed.jpg": bytes(zeroed),
        "cut.jpg": cut,
    }


def test_damaged_scans_same_status_as_sequential(tmp_path: Path) -> None:
    """Hybrid rejects damaged scan data as the sequential model does."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name, data in _damaged_jpegs().items():
        (folder / name).write_bytes(data)
    outcomes = {}
    for mode, engine in (
        ("sequential", "vips"),
        ("hybrid", "vips"),
        ("hybrid", "pillow"),
    ):
        request = RunRequest(
            inputs=[str(folder)],
            out_dir=tmp_path / f"{mode}-{engine}",
            config=CONFIG,
            mode=mode,
            workers=2,
            small_engine=engine,
        )
        sources, issues = collect_sources(request)
        summary = execute(request, sources, issues)
        outcomes[mode, engine] = {
            Path(r.source.path).name: (r.status.value, r.reason)
            for r in summary.results
        }
    expected = outcomes["sequential", "vips"]
    assert outcomes["hybrid", "vips"] == expected
    assert outcomes["hybrid", "pillow"] == expected
    assert expected["intact.jpg"] == ("done", None)
    for name in ("inverted.jpg", "zeroed.jpg", "cut.jpg"):
        assert expected[name][0] == "rejected", name


def _zeroed_scan_noticed_at_full_scale(photo: bytes) -> bytes:
    """Zero 300 bytes of the scan where libjpeg warns only at full scale."""
    scan = photo.index(b"\xff\xda")
    for start in range((scan + len(photo)) // 2, len(photo) - 400, 997):
        damaged = photo[:start] + bytes(300) + photo[start + 300 :]
        try:
            pyvips.Image.jpegload_buffer(damaged, fail_on="warning").copy_memory()
        except pyvips.Error:
            return damaged
    raise AssertionError("no run of zeros in the scan made libjpeg warn")


def test_pillow_engine_rejects_damage_full_decode_notices(tmp_path: Path) -> None:
    """The Pillow engine rejects scan damage that a scaled decode misses."""
    folder = tmp_path / "in"
    (photo,) = samples.generate(tmp_path / "photo", 1, megapixels=0.3, seed=0)
    folder.mkdir()
    (folder / "zeroed.jpg").write_bytes(
        _zeroed_scan_noticed_at_full_scale(photo.read_bytes())
    )
    # The default variants keep this photo's full size, which libvips then
    # decodes at full scale: with a thumbnail alone it would shrink on load.
    request = RunRequest(
        inputs=[str(folder)],
        out_dir=tmp_path / "out",
        config=parse_config({}),
        mode="hybrid",
        workers=2,
        small_engine="pillow",
    )
    sources, issues = collect_sources(request)
    (result,) = execute(request, sources, issues).results
    assert result.status.value == "rejected", result.message
    assert result.variants == []


def test_stop_leaves_waiting_batches(tmp_path: Path) -> None:
    """After a stop request only the batches already on a worker finish."""
    folder = tmp_path / "in"
    _small_photos(folder, 60)
    request = RunRequest(
        inputs=[str(folder)],
        out_dir=tmp_path / "out",
        config=CONFIG,
        mode="hybrid",
        workers=2,
    )
    sources, issues = collect_sources(request)
    control = RunControl()

    def stop_once(_result: ImageResult) -> None:
        if not control.stopping:
            control.request_stop()

    summary = execute(request, sources, issues, control=control, on_result=stop_once)
    # The batches finished when the stop came, at most one per worker, and
    # the next batch each of those workers took as it handed in its results.
    assert 1 <= len(summary.results) <= 2 * 2 * DEFAULT_BATCH_SIZE
    assert len(summary.results) + len(summary.not_processed) == 60
    # Withdrawn sources were admitted, but they are pending in the catalog.
    with sqlite3.connect(tmp_path / "out" / "catalog.sqlite") as connection:
        states = dict(
            connection.execute("SELECT status, count(*) FROM images GROUP BY status")
        )
    assert states.get("in_progress", 0) == 0
    assert states.get("pending", 0) == len(summary.not_processed)
