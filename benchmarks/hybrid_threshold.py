"""Measure where libvips overtakes the Pillow fast path, for the hybrid model.

The hybrid model sends baseline JPEGs up to ``DEFAULT_SMALL_PIXELS`` to Pillow
and larger ones to libvips. This script times ``Pipeline.render`` (decode,
the three default variants, encode: the only step whose engine differs) with
``engine="pillow"`` and ``engine="vips"`` on the same photos, at sizes from
0.3 to 6 MP. It runs in one process pinned to one core, with libvips limited
to one thread, as a hybrid worker runs. The two engines alternate on each
photo, and each size reports the median over its photos and rounds.

The crossover is where the Pillow-to-libvips time ratio reaches 1, by linear
interpolation between the two sizes around it. It is computed from CPU time,
which other programs on the machine disturb less than wall time.

Usage: python benchmarks/hybrid_threshold.py [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common import REPO, generate_cached

# 0.79 and 0.85 MP are 1024x768 and 1056x792: they sit on either side of the
# 1024 px edge of the medium variant, above which it needs a resize.
SIZES_MP = (0.3, 0.5, 0.65, 0.79, 0.85, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
# Photos 1-6 of a set, of which numbers 4 and 5 carry EXIF Orientation 6 and
# 8, near the share of rotated photos in the other sample sets.
PHOTOS = 6
QUICK_PHOTOS = 2
ROUNDS = 7
QUICK_ROUNDS = 2
SEED = 2
ENGINES = ("pillow", "vips")


@dataclass
class SizePoint:
    """Render times of both engines at one photo size, in seconds per photo."""

    megapixels: float
    width: int = 0
    height: int = 0
    cpu: dict[str, list[float]] = field(default_factory=dict)
    wall: dict[str, list[float]] = field(default_factory=dict)

    def median(self, kind: str, engine: str) -> float:
        samples = self.cpu if kind == "cpu" else self.wall
        return statistics.median(samples[engine])

    def ratio(self, kind: str) -> float:
        """Pillow's time over libvips' time: below 1, Pillow is faster."""
        return self.median(kind, "pillow") / self.median(kind, "vips")

    @property
    def frame(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass
class Threshold:
    points: list[SizePoint]
    photos: int
    rounds: int
    cpu_core: int | None

    def bracket(self, kind: str = "cpu") -> tuple[SizePoint, SizePoint] | None:
        """Return the last size where Pillow is faster and the next one, or None.

        None means that one engine is faster at every measured size.
        """
        for low, high in itertools.pairwise(self.points):
            if low.ratio(kind) < 1 <= high.ratio(kind):
                return low, high
        return None

    def crossover_mp(self, kind: str = "cpu") -> float | None:
        """Return the size in MP where the ratio first reaches 1, or None.

        The value is a linear interpolation between the bracketing sizes, so
        it is an estimate: the measured ratio changes in steps, not smoothly.
        """
        bracket = self.bracket(kind)
        if bracket is None:
            return None
        low, high = bracket
        share = (1 - low.ratio(kind)) / (high.ratio(kind) - low.ratio(kind))
        return low.megapixels + share * (high.megapixels - low.megapixels)


def pin_to_one_core() -> tuple[set[int] | None, int | None]:
    """Pin this process to its last allowed core; return the old set and the core."""
    if not hasattr(os, "sched_setaffinity"):
        return None, None
    allowed = os.sched_getaffinity(0)
    core = max(allowed)
    os.sched_setaffinity(0, {core})
    return allowed, core


def measure(quick: bool = False) -> Threshold:
    """Time both engines at every size and return the points in size order."""
    from imgflow.config import PipelineConfig
    from imgflow.engines import vips
    from imgflow.pipeline import Pipeline
    from imgflow.records import Source

    photos = QUICK_PHOTOS if quick else PHOTOS
    rounds = QUICK_ROUNDS if quick else ROUNDS
    vips.configure_worker(threads=1)
    # render() writes nothing, so the output folder stays empty.
    pipeline = Pipeline(PipelineConfig(), Path(tempfile.gettempdir()))

    jobs = []
    points = []
    for megapixels in SIZES_MP:
        _, files = generate_cached(megapixels, photos, seed=SEED)
        point = SizePoint(megapixels)
        point.cpu = {engine: [] for engine in ENGINES}
        point.wall = {engine: [] for engine in ENGINES}
        for index, path in enumerate(files):
            data = path.read_bytes()
            loaded = pipeline.load(Source(index, str(path)), data)
            point.width, point.height = loaded.header.display_size
            jobs.append((point, loaded, data))
        points.append(point)

    allowed, core = pin_to_one_core()
    try:
        # One untimed render per engine and photo loads the codecs and
        # fills the page cache before the timed rounds.
        for _, loaded, data in jobs:
            for engine in ENGINES:
                check_engine(pipeline.render(loaded, data, engine=engine), engine)
        for round_index in range(rounds):
            for job_index, (point, loaded, data) in enumerate(jobs):
                order = ENGINES if (round_index + job_index) % 2 == 0 else ENGINES[::-1]
                for engine in order:
                    cpu_started = time.process_time()
                    wall_started = time.perf_counter()
                    pipeline.render(loaded, data, engine=engine)
                    point.wall[engine].append(time.perf_counter() - wall_started)
                    point.cpu[engine].append(time.process_time() - cpu_started)
            print(f"hybrid threshold: round {round_index + 1}/{rounds} done")
    finally:
        if allowed is not None:
            os.sched_setaffinity(0, allowed)
    return Threshold(points, photos, rounds, core)


def describe_orientations(photos: int) -> str:
    """Describe the EXIF orientations of photos 1 to ``photos`` of a sample set."""
    from imgflow.samples import orientation_for

    rotated = [
        orientation_for(n) for n in range(1, photos + 1) if orientation_for(n) != 1
    ]
    if not rotated:
        return "none rotated by EXIF Orientation"
    values = " and ".join(str(value) for value in rotated)
    return f"{len(rotated)} of them with EXIF Orientation {values}"


def check_engine(rendered: Sequence[object], engine: str) -> None:
    """Raise if a render ran on another engine than the one requested."""
    used = {getattr(item, "engine", None) for item in rendered}
    if used != {engine}:
        raise RuntimeError(
            f"expected every variant rendered by {engine}, got {sorted(map(str, used))}; "
            "the sample photos no longer qualify for the Pillow fast path"
        )


TABLE_HEADER = [
    "MP",
    "frame (px)",
    "Pillow CPU ms",
    "libvips CPU ms",
    "Pillow / libvips (CPU)",
    "Pillow wall ms",
    "libvips wall ms",
    "Pillow / libvips (wall)",
]


def table_rows(threshold: Threshold) -> list[list[str]]:
    rows = []
    for point in threshold.points:
        rows.append(
            [
                f"{point.megapixels:g}",
                point.frame,
                f"{1000 * point.median('cpu', 'pillow'):.1f}",
                f"{1000 * point.median('cpu', 'vips'):.1f}",
                f"{point.ratio('cpu'):.2f}",
                f"{1000 * point.median('wall', 'pillow'):.1f}",
                f"{1000 * point.median('wall', 'vips'):.1f}",
                f"{point.ratio('wall'):.2f}",
            ]
        )
    return rows


def describe_crossover(threshold: Threshold, kind: str) -> str:
    """Describe the crossover in words, for the console and the doc."""
    bracket = threshold.bracket(kind)
    crossover = threshold.crossover_mp(kind)
    if bracket is not None and crossover is not None:
        low, high = bracket
        return (
            f"Pillow is faster up to {low.megapixels:g} MP ({low.frame}) and libvips "
            f"from {high.megapixels:g} MP ({high.frame}); linear interpolation puts "
            f"the crossover at about {crossover:.2f} MP "
            f"({round(crossover * 1e6, -4):,.0f} pixels)"
        )
    first = threshold.points[0].ratio(kind)
    if first >= 1:
        return f"no crossover: libvips is faster at every size from {SIZES_MP[0]:g} MP"
    return f"no crossover: Pillow is faster at every size up to {SIZES_MP[-1]:g} MP"


def print_table(threshold: Threshold) -> None:
    rows = [TABLE_HEADER, *table_rows(threshold)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_HEADER))]
    print("\nPillow fast path against libvips, render time per photo (median)")
    for row in rows:
        print(
            "  ".join(
                cell.rjust(width) for cell, width in zip(row, widths, strict=True)
            )
        )
    print(f"Crossover by CPU time: {describe_crossover(threshold, 'cpu')}")
    print(f"Crossover by wall time: {describe_crossover(threshold, 'wall')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"use {QUICK_PHOTOS} photos per size and {QUICK_ROUNDS} rounds",
    )
    args = parser.parse_args(argv)
    # Lets imgflow load from the work tree when the project is not installed.
    sys.path.insert(0, str(REPO / "src"))
    print_table(measure(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
