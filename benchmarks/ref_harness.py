"""Command line and timing shared by the reference scripts.

Each reference script supplies only its per-photo ``process`` function (and,
for libvips, a per-process set-up); this module parses the arguments, runs
the photos in one process or on a pool, and writes ``--timings`` as JSON in
the shape of ``imgflow run --report``:
``{"images": [{"source": ..., "seconds": ..., "finished_seconds": ...}]}``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

Process = Callable[[str, str], object]


def timed_process(
    process: Process, path_text: str, out_dir_text: str
) -> tuple[float, float]:
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
    process: Process,
    workers: int,
    paths: list[str],
    out_dirs: list[str],
    configure: Callable[[], None] | None,
) -> list[tuple[float, float]]:
    """Process the photos on a pool of worker processes; return their times."""
    chunksize = max(1, len(paths) // (workers * 8))
    task = functools.partial(timed_process, process)
    with ProcessPoolExecutor(workers, initializer=configure) as pool:
        # list() re-raises the first worker error, which ends the run non-zero.
        return list(pool.map(task, paths, out_dirs, chunksize=chunksize))


def run_reference(
    description: str,
    process: Process,
    argv: list[str] | None = None,
    configure: Callable[[], None] | None = None,
) -> int:
    """Parse the command line and process every photo; return the exit status.

    ``configure`` runs once in each process that processes photos.
    """
    # The clock of finished_seconds starts after the imports, as imgflow's
    # does, so neither counts the interpreter's start-up.
    started = time.time()
    parser = argparse.ArgumentParser(description=description)
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
        if configure is not None:
            configure()
        timings = [
            timed_process(process, path, out_dir)
            for path, out_dir in zip(paths, out_dirs, strict=True)
        ]
    else:
        timings = run_pool(process, args.workers, paths, out_dirs, configure)
    if args.timings is not None:
        write_timings(args.timings, paths, timings, started)
    return 0
