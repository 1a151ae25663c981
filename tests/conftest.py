"""Shared fixtures: the real-file corpus and small generated images."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgflow.config import PipelineConfig, parse_config
from imgflow.pipeline import Pipeline
from imgflow.records import ImageResult, Source

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The shared corpus of real files; skipped on a clone that lacks it.

    CI always has the corpus, so there a missing folder is a failure.
    """
    if not CORPUS.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"corpus folder {CORPUS} is missing on CI")
        pytest.skip(f"corpus folder {CORPUS} not present (only beside the repository)")
    return CORPUS


def quadrant_pixels(width: int, height: int) -> np.ndarray:
    """An RGB image with four flat quadrants: red, green / blue, white.

    Any rotation or mirror moves the colours to other corners, so the
    orientation of a result can be checked by pixels.
    """
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    half_w, half_h = width // 2, height // 2
    pixels[:half_h, :half_w] = (255, 0, 0)
    pixels[:half_h, half_w:] = (0, 255, 0)
    pixels[half_h:, :half_w] = (0, 0, 255)
    pixels[half_h:, half_w:] = (255, 255, 255)
    return pixels


def jpeg_bytes(
    image: Image.Image,
    *,
    exif: Image.Exif | None = None,
    quality: int = 95,
    **options: object,
) -> bytes:
    buffer = io.BytesIO()
    if exif is not None:
        options["exif"] = exif
    image.save(buffer, "JPEG", quality=quality, **options)
    return buffer.getvalue()


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, bytes], Path]:
    """Write bytes to a file under a fresh input folder and return its path."""

    def write(name: str, data: bytes) -> Path:
        path = tmp_path / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    return write


@pytest.fixture
def process(tmp_path: Path) -> Callable[..., ImageResult]:
    """Run one file through a sequential pipeline writing to tmp_path/out."""

    def run(path: Path, config: PipelineConfig | dict | None = None) -> ImageResult:
        if isinstance(config, dict):
            config = parse_config(config)
        pipeline = Pipeline(config or PipelineConfig(), tmp_path / "out")
        return pipeline.process(Source(index=0, path=str(path)))

    return run


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def imgflow_process(
    *args: str, env: dict[str, str] | None = None, sigint_ignored: bool = False
) -> Iterator[subprocess.Popen[str]]:
    """Run `python -m imgflow ARGS` for the block, with stderr as a text pipe.

    With `sigint_ignored`, the process starts with SIGINT ignored, as a
    shell without job control starts a background command. A process
    still running when the block ends is killed.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "imgflow", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=_ignore_sigint if sigint_ignored else None,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def interrupt(process: subprocess.Popen[str], after_line: str | None = None) -> str:
    """Send SIGINT, once a stderr line contains `after_line` if given.

    Returns the rest of stderr, after the process has exited.
    """
    assert process.stderr is not None
    if after_line is not None:
        for line in process.stderr:
            if after_line in line:
                break
    process.send_signal(signal.SIGINT)
    errors = process.stderr.read()
    process.wait(timeout=120)
    return errors
