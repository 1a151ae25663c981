"""Choose an execution model from the inputs, before the run starts.

The choice reads the headers of an even sample of the inputs (well under
a millisecond each, no decoding), with the routing test hybrid uses, and
follows measured behaviour. Workers the command forked ahead pay off from
two images; spawned ones, which start a fresh interpreter each, only from
four. Hybrid
pays off when many images are small baseline JPEGs, which it batches and
keeps a worker for. Otherwise, whole images on a process pool use every core.
"""

from __future__ import annotations

from dataclasses import dataclass

from imgflow.config import PipelineConfig
from imgflow.executors.pool import reserved_count
from imgflow.executors.routing import DEFAULT_SMALL_PIXELS, is_small_photo, peek_header
from imgflow.records import Source

SAMPLE_SIZE = 32
# Fewer images than this do not repay spawning worker processes.
MIN_IMAGES_FOR_WORKERS = 4
# Workers the command forked ahead cost milliseconds, so two images repay
# them: on 2 cores, two 12 MP photos took 279 ms in parallel against 341 ms
# sequentially, and two 0.3 MP photos 158 ms against 168 ms.
MIN_IMAGES_FOR_FORKED_WORKERS = 2
# Share of sampled images in hybrid's small class above which hybrid is chosen.
MIN_FAST_SHARE = 0.25


@dataclass(frozen=True, slots=True)
class Choice:
    """The chosen mode and the reason, in words for the run summary."""

    mode: str
    reason: str


def _sample(sources: list[Source], size: int) -> list[Source]:
    if len(sources) <= size:
        return sources
    step = len(sources) / size
    return [sources[int(i * step)] for i in range(size)]


def choose_mode(
    sources: list[Source],
    config: PipelineConfig,
    workers: int,
    *,
    time_limit: float | None = None,
) -> Choice:
    """Pick sequential, parallel or hybrid for these sources."""
    least = (
        MIN_IMAGES_FOR_FORKED_WORKERS if reserved_count() else MIN_IMAGES_FOR_WORKERS
    )
    few = len(sources) < least
    if time_limit is not None and (workers <= 1 or few):
        # The sequential model runs images in this process, where a stuck
        # decode cannot be stopped.
        return Choice(
            "parallel",
            f"a time limit ({time_limit:g} s per image) is enforced only on "
            "worker processes",
        )
    if workers <= 1:
        return Choice("sequential", "one worker: a pool would add start-up cost only")
    if few:
        return Choice(
            "sequential",
            f"{len(sources)} image{'s' if len(sources) != 1 else ''}: "
            f"fewer than {least}, "
            "worker start-up would cost more than it saves",
        )
    sample = _sample(sources, SAMPLE_SIZE)
    fast = 0
    readable = 0
    for source in sample:
        header = peek_header(source.path)
        if header is None:
            continue
        readable += 1
        if is_small_photo(source, header, config):
            fast += 1
    share = fast / readable if readable else 0.0
    if share >= MIN_FAST_SHARE:
        return Choice(
            "hybrid",
            f"{fast} of {readable} sampled images are small baseline JPEGs "
            f"(<= {DEFAULT_SMALL_PIXELS:,} pixels), which hybrid batches and "
            "keeps a worker for",
        )
    return Choice(
        "parallel",
        f"{fast} of {readable} sampled images are small baseline JPEGs; whole images on "
        f"{workers} worker processes use every core",
    )
