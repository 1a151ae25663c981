"""Hybrid model: route each image to the engine and pool that suit it.

Small baseline JPEGs go, in batches, to a lane of workers running the
Pillow fast path, which beats libvips below about a megapixel and saves one
round trip per image. Large and slow kinds (over the pixel threshold,
progressive, animated, tagged with a colour profile, or any other format)
go one at a time to a separate libvips lane with its own size, so a slow
image never holds back a batch of small ones.
"""

from __future__ import annotations

from collections.abc import Callable

from imgflow.engines import pillow
from imgflow.executors.parallel import default_workers
from imgflow.executors.pipelined import Lane, PipelinedExecutor
from imgflow.pipeline import Described, Pipeline

# NOTE: measured on 2 cores with libjpeg-turbo 3 (Pillow 13) and libvips
# 8.18: Pillow renders the three default variants faster up to about this
# size; see docs/benchmarks.md for the runs behind it.
DEFAULT_SMALL_PIXELS = 1_500_000
DEFAULT_BATCH_SIZE = 8

SMALL_LANE = 0
LARGE_LANE = 1


class HybridExecutor(PipelinedExecutor):
    name = "hybrid"

    def __init__(
        self,
        workers: int | None = None,
        *,
        large_workers: int | None = None,
        small_pixels: int = DEFAULT_SMALL_PIXELS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        queue_size: int = 16,
        time_limit: float | None = None,
    ) -> None:
        super().__init__(workers, queue_size=queue_size, time_limit=time_limit)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.large_workers = large_workers or max(
            1, (workers or default_workers()) // 2
        )
        self.small_pixels = small_pixels
        self.batch_size = batch_size

    def lanes(
        self, pipeline: Pipeline
    ) -> tuple[list[Lane], Callable[[Described], int]]:
        lanes = [
            Lane("small", self.workers, engine="pillow", batch_size=self.batch_size),
            Lane("large", self.large_workers, engine="vips"),
        ]

        def route(described: Described) -> int:
            header = described.loaded.header
            small = header.pixels <= self.small_pixels
            if small and pillow.can_render(header, pipeline.config):
                return SMALL_LANE
            return LARGE_LANE

        return lanes, route
