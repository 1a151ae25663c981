"""Reference job in plain Pillow: three JPEG variants per photo, as usually written.

For each input JPEG, ``draft`` lets libjpeg decode at the smallest DCT scale that
still covers 2048 px, and ``thumbnail`` reduces to 2048 px. Its ``reducing_gap``
makes large factors start with a fast box reduce. Then 1024 px is made from the
2048 px image and 256 px from the 1024 px one. ``exif_transpose`` runs on the 2048 px
image, where turning costs a quarter of what it costs at 12 MP. All three are
saved as JPEG quality 85, and the EXIF block is read as a metadata stage would.

``--timings FILE`` writes each photo's processing time and the time at which
its worker finished it, in seconds since ``main`` started, as JSON in the shape
of ``imgflow run --report``:
``{"images": [{"source": ..., "seconds": ..., "finished_seconds": ...}]}``.

Usage: python benchmarks/ref_pillow.py --out DIR [--workers N] [--timings FILE] FILE...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image, ImageOps

VARIANTS = (("large", 2048), ("medium", 1024), ("thumb", 256))
JPEG_QUALITY = 85
REDUCING_GAP = 2.0


def process(path_text: str, out_dir_text: str) -> int:
    """Write the three variants of one photo and return its EXIF tag count."""
    path = Path(path_text)
    out_dir = Path(out_dir_text)

    with Image.open(path) as source:
        exif_tags = len(source.getexif())
        largest = VARIANTS[0][1]
        source.draft("RGB", (largest, largest))
        image = source.convert("RGB") if source.mode != "RGB" else source.copy()

    image.thumbnail((largest, largest), reducing_gap=REDUCING_GAP)
    ImageOps.exif_transpose(image, in_place=True)
    for name, edge in VARIANTS:
        image.thumbnail((edge, edge), reducing_gap=REDUCING_GAP)
        image.save(out_dir / f"{path.stem}_{name}.jpg", "JPEG", quality=JPEG_QUALITY)
    return exif_tags


def timed_process(path_text: str, out_dir_text: str) -> tuple[float, float]:
    """Run ``process`` on one photo; return its wall time and its end time.

    The end time is ``time.time()``, because the workers and the parent
    process share that clock.
    """
    started = time.perf_counter()
    process(path_text, out_dir_text)
    seconds = time.perf_counter() - started
    return seconds, time.time()


def write_timings(
    path: Path, sources: list[str], timings: list[tuple[float, float]], started: float
) -> None:
    """Write each photo's time and its end time since ``started`` as JSON."""
    images = [
        {
            "source": source,
            "seconds": round(seconds, 4),
            "finished_seconds": round(ended - started, 4),
        }
        for source, (seconds, ended) in zip(sources, timings, strict=True)
    ]
    path.write_text(json.dumps({"images": images}))


def run_pool(
    workers: int, paths: list[str], out_dirs: list[str]
) -> list[tuple[float, float]]:
    """Process the photos on a pool of worker processes; return their times."""
    chunksize = max(1, len(paths) // (workers * 8))
    with ProcessPoolExecutor(workers) as pool:
        # list() re-raises the first worker error, which ends the run non-zero.
        return list(pool.map(timed_process, paths, out_dirs, chunksize=chunksize))


def main(argv: list[str] | None = None) -> int:
    # The clock of finished_seconds starts after the imports, as imgflow's
    # does, so neither counts the interpreter's start-up.
    started = time.time()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="input JPEG files")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--timings",
        type=Path,
        help="write each photo's processing time and end time, in seconds, to this "
        "JSON file",
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="worker processes"
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be 1 or more, got {args.workers}")
    args.out.mkdir(parents=True, exist_ok=True)

    paths = [str(path) for path in args.files]
    out_dirs = [str(args.out)] * len(paths)
    if args.workers == 1:
        timings = [
            timed_process(path, out_dir)
            for path, out_dir in zip(paths, out_dirs, strict=True)
        ]
    else:
        timings = run_pool(args.workers, paths, out_dirs)
    if args.timings is not None:
        write_timings(args.timings, paths, timings, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
