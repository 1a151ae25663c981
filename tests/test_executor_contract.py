"""One contract for every execution model, with sequential as the oracle.

Each model must write byte-identical files and the same catalog content
(apart from run ids and timestamps) for the same inputs and config.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
import pyvips
from PIL import Image

from conftest import jpeg_bytes, quadrant_pixels
from imgflow.catalog import SQLiteCatalog
from imgflow.config import parse_config
from imgflow.engines import vips
from imgflow.errors import Status
from imgflow.pipeline import Pipeline
from imgflow.records import Source
from imgflow.runner import RunRequest, collect_sources, execute

MODELS = [("sequential", 1), ("parallel", 2), ("pipelined", 2), ("hybrid", 2)]
# Models whose outputs come from the same engine as the oracle's, byte for byte.
# Hybrid renders small JPEGs with Pillow, so those are compared by similarity.
ALL_MODELS = MODELS
# Two resamplers and encoders on a noisy test image: 30 dB is visually alike.
MIN_PSNR_DB = 30.0
ENGINE_DEPENDENT = {"bytes", "sha256"}

CONFIG = {
    "variants": {
        "thumb": {"size": 96},
        "square": {"width": 80, "height": 80, "fit": "cover", "format": "webp"},
        "wide": {"width": 120, "height": 40, "fit": "exact", "format": "png"},
        "small": {"size": 48, "format": "avif", "effort": 2},
    }
}

TIMING_COLUMNS = {"run_id", "updated_at", "mtime_ns"}


def _make_inputs(folder: Path) -> None:
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True)
    for index in range(6):
        pixels = quadrant_pixels(320 + 16 * index, 240)
        noise = rng.integers(0, 40, pixels.shape, dtype=np.uint8)
        image = Image.fromarray(pixels // 2 + noise)
        exif = Image.Exif()
        exif[0x0112] = (1, 6, 8, 3, 1, 5)[index]
        (folder / f"photo_{index}.jpg").write_bytes(jpeg_bytes(image, exif=exif))
    rgba = Image.new("RGBA", (64, 48), (255, 0, 0, 128))
    rgba.save(folder / "alpha.png")
    frames = [Image.new("P", (40, 30), color) for color in (1, 2, 3)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    good = jpeg_bytes(Image.fromarray(quadrant_pixels(200, 100)))
    (folder / "cut.jpg").write_bytes(good[: len(good) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    nested = folder / "nested"
    nested.mkdir()
    # The same name as a top-level file, different content: both must survive.
    buffer = io.BytesIO()
    Image.fromarray(quadrant_pixels(100, 80)[::-1].copy()).save(buffer, "JPEG")
    (nested / "photo_0.jpg").write_bytes(buffer.getvalue())


# The Pillow fast path encodes JPEG, PNG and WebP only, so hybrid is
# checked on a config without the AVIF variant.
FAST_PATH_CONFIG = {
    "variants": {
        name: v for name, v in CONFIG["variants"].items() if v.get("format") != "avif"
    }
}


def _run(
    inputs: Path,
    out: Path,
    mode: str,
    workers: int,
    config: dict = CONFIG,
    small_engine: str = "vips",
):
    request = RunRequest(
        inputs=[str(inputs)],
        out_dir=out,
        config=parse_config(config),
        mode=mode,
        workers=workers,
        small_engine=small_engine,
    )
    sources, issues = collect_sources(request)
    return execute(request, sources, issues)


def _files(out: Path) -> dict[str, str]:
    return {
        path.relative_to(out).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(out.rglob("*"))
        if path.is_file() and not path.name.startswith("catalog.sqlite")
    }


def _catalog(out: Path, ignore: set[str] = TIMING_COLUMNS) -> dict[str, list[dict]]:
    catalog = SQLiteCatalog(out / "catalog.sqlite")
    try:
        strip = lambda rows: [  # noqa: E731
            {k: v for k, v in row.items() if k not in ignore} for row in rows
        ]
        return {
            "images": strip(catalog.images()),
            "variants": strip(catalog.variants()),
            "rejections": strip(catalog.rejections()),
        }
    finally:
        catalog.close()


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("oracle")
    _make_inputs(root / "in")
    summary = _run(root / "in", root / "out", "sequential", 1)
    assert summary.counts == {"done": 9, "rejected": 2}
    return root / "in", root / "out"


@pytest.fixture(scope="module")
def fast_path_oracle(
    oracle: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("fast-oracle") / "out"
    _run(oracle[0], out, "sequential", 1, FAST_PATH_CONFIG)
    return out


@pytest.mark.parametrize(("mode", "workers"), MODELS)
def test_model_matches_oracle_files(
    mode: str, workers: int, oracle: tuple[Path, Path], tmp_path: Path
) -> None:
    """Every model writes byte-identical variants and sidecars."""
    inputs, expected = oracle
    summary = _run(inputs, tmp_path / "out", mode, workers)
    assert summary.mode == mode
    assert _files(tmp_path / "out") == _files(expected)


@pytest.mark.parametrize(("mode", "workers"), MODELS)
def test_model_matches_oracle_catalog(
    mode: str, workers: int, oracle: tuple[Path, Path], tmp_path: Path
) -> None:
    """Every model records the same catalog rows, timings aside."""
    inputs, expected = oracle
    _run(inputs, tmp_path / "out", mode, workers)
    assert _catalog(tmp_path / "out") == _catalog(expected)


@pytest.mark.parametrize(("mode", "workers"), ALL_MODELS)
def test_model_reports_in_input_order(
    mode: str, workers: int, oracle: tuple[Path, Path], tmp_path: Path
) -> None:
    """Results come back sorted by input position with one per input."""
    inputs, _ = oracle
    summary = _run(inputs, tmp_path / "out", mode, workers)
    indexes = [result.source.index for result in summary.results]
    assert indexes == list(range(11))
    rejected = {
        Path(r.source.path).name for r in summary.results if r.status is Status.REJECTED
    }
    assert rejected == {"cut.jpg", "empty.jpg"}


@pytest.mark.parametrize(("mode", "workers"), ALL_MODELS)
def test_rerun_does_not_duplicate(
    mode: str, workers: int, oracle: tuple[Path, Path], tmp_path: Path
) -> None:
    """A second run into the same folder replaces files and rows, adding none."""
    inputs, _ = oracle
    out = tmp_path / "out"
    _run(inputs, out, mode, workers)
    first_files = _files(out)
    first_catalog = _catalog(out)
    _run(inputs, out, mode, workers)
    assert _files(out) == first_files
    assert _catalog(out) == first_catalog
    leftovers = [p for p in out.rglob(".imgflow-*")]
    assert leftovers == []


def test_same_name_in_two_folders_survives(oracle: tuple[Path, Path]) -> None:
    """Two different photo_0.jpg files get two keys and two sets of variants."""
    _, out = oracle
    thumbs = sorted(p.name for p in (out / "thumb").glob("photo_0-*.jpg"))
    assert len(thumbs) == 2


def _psnr(first: Path, second: Path) -> float:
    a = np.asarray(Image.open(first).convert("RGB"), dtype=np.float64)
    b = np.asarray(Image.open(second).convert("RGB"), dtype=np.float64)
    mse = float(((a - b) ** 2).mean())
    return 99.0 if mse == 0 else 10 * float(np.log10(255**2 / mse))


def test_hybrid_pillow_matches_oracle_by_similarity(
    oracle: tuple[Path, Path], fast_path_oracle: Path, tmp_path: Path
) -> None:
    """With Pillow for small photos, their variants match by size and PSNR."""
    inputs, expected = oracle[0], fast_path_oracle
    out = tmp_path / "out"
    summary = _run(inputs, out, "hybrid", 2, FAST_PATH_CONFIG, small_engine="pillow")
    engines = {Path(r.source.path).name: r.engine for r in summary.results}
    assert engines["photo_1.jpg"] == "pillow"
    assert engines["alpha.png"] == "vips"
    assert engines["anim.gif"] == "vips"

    produced, reference = _files(out), _files(expected)
    assert sorted(produced) == sorted(reference)
    fast_keys = {r.key for r in summary.results if r.engine == "pillow"}
    for relative, digest in reference.items():
        key = Path(relative).stem
        if key in fast_keys and not relative.startswith("meta/"):
            with (
                Image.open(out / relative) as made,
                Image.open(expected / relative) as ref,
            ):
                assert made.size == ref.size, relative
            assert _psnr(out / relative, expected / relative) >= MIN_PSNR_DB, relative
        elif key not in fast_keys:
            assert produced[relative] == digest, relative


def test_hybrid_pillow_catalog_matches_apart_from_bytes(
    oracle: tuple[Path, Path], fast_path_oracle: Path, tmp_path: Path
) -> None:
    """Hybrid records the same rows; only encoded sizes and hashes may differ."""
    inputs, expected = oracle[0], fast_path_oracle
    _run(inputs, tmp_path / "out", "hybrid", 2, FAST_PATH_CONFIG, small_engine="pillow")
    ignore = TIMING_COLUMNS | ENGINE_DEPENDENT
    produced = _catalog(tmp_path / "out", ignore)
    reference = _catalog(expected, ignore)
    assert produced["variants"] == reference["variants"]
    assert produced["rejections"] == reference["rejections"]
    assert [row["source"] for row in produced["images"]] == [
        row["source"] for row in reference["images"]
    ]


def test_avif_bytes_same_for_any_thread_count(tmp_path: Path) -> None:
    """The AV1 encoder's output depends on its threads, which every model sets apart.

    Sequential mode gives libvips every core and workers give it one, so an
    AVIF variant is encoded with one thread either way.
    """
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 100, (750, 1000, 3), dtype=np.uint8)
    pixels = (quadrant_pixels(1000, 750) // 2 + noise).astype(np.uint8)
    source = tmp_path / "photo.jpg"
    source.write_bytes(jpeg_bytes(Image.fromarray(pixels)))
    config = parse_config(
        {"variants": {"a": {"size": 800, "format": "avif", "effort": 0}}}
    )
    encoded = []
    previous = pyvips.concurrency_get()
    try:
        for threads in (2, 1):
            vips.configure_worker(threads=threads)
            out = tmp_path / f"out-{threads}"
            result = Pipeline(config, out).process(Source(0, str(source)))
            assert result.status is Status.DONE, result.message
            encoded.append((out / result.variants[0].path).read_bytes())
    finally:
        pyvips.concurrency_set(previous)
    assert encoded[0] == encoded[1]
