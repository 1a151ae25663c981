"""Per-image cost of one worker, measured by a profile or estimated.

`read_profile` maps a profile, as `imgflow.advisor.profile.load_profile`
reads and checks it, to the few costs the advisor uses, so the rest of the
advisor depends only on `CostProfile`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from imgflow.advisor.profile import ProfileError, StageSummary, load_profile
from imgflow.advisor.simulate import ServiceTimes
from imgflow.errors import UsageError
from imgflow.stages import ingest, store

PROFILE_HINT = "write one with `imgflow profile SAMPLE --json FILE`"
# Seconds per image that a profile may give. No image passes the pipeline
# in under a microsecond, and a day per image means a broken timing. Both
# would also carry the plan's arithmetic out of float range.
MIN_MEAN_SECONDS = 1e-6
MAX_SECONDS_PER_IMAGE = 86_400.0
ESTIMATE_SOURCE = "built-in estimate"
# Stages that read and write files rather than compute on pixels.
IO_STAGES = (ingest.STAGE, store.STAGE)


@dataclass(frozen=True, slots=True)
class CostProfile:
    """Per-image cost of one worker and the machine it was measured on."""

    source: str  # the profile's path, or ESTIMATE_SOURCE
    estimated: bool
    service: ServiceTimes
    p99_seconds: float
    peak_rss_bytes: int
    images_timed: int | None
    cores: int | None
    memory_bytes: int | None
    megapixels_p50: float | None
    megapixels_max: float | None
    # Share of the mean time per image spent in IO_STAGES, when measured.
    io_share: float | None
    progressive: int = 0
    animated: int = 0


# NOTE: an estimate for 12 MP baseline JPEG photos and the default three
# JPEG variants, taken from docs/benchmarks.md (2-core AMD EPYC, libvips
# 8.18.7). Two parallel workers processed 10.5 images/s, so one worker
# spends about 2 / 10.5 = 0.19 s per image. The largest process peaked at
# 153 MiB (sequential mode; 112 MiB per parallel worker). The page's "MB"
# are ru_maxrss KiB divided by 1024. It gives no spread per image, so p50,
# p95 and max all equal the mean.
ESTIMATE_SECONDS_PER_IMAGE = 0.19
ESTIMATE_PEAK_RSS_BYTES = 153 * 2**20
ESTIMATE_MEGAPIXELS = 12.0

ESTIMATE = CostProfile(
    source=ESTIMATE_SOURCE,
    estimated=True,
    service=ServiceTimes(
        mean=ESTIMATE_SECONDS_PER_IMAGE,
        p50=ESTIMATE_SECONDS_PER_IMAGE,
        p95=ESTIMATE_SECONDS_PER_IMAGE,
        max=ESTIMATE_SECONDS_PER_IMAGE,
    ),
    p99_seconds=ESTIMATE_SECONDS_PER_IMAGE,
    peak_rss_bytes=ESTIMATE_PEAK_RSS_BYTES,
    images_timed=None,
    cores=None,
    memory_bytes=None,
    megapixels_p50=ESTIMATE_MEGAPIXELS,
    megapixels_max=ESTIMATE_MEGAPIXELS,
    io_share=None,
)


def read_profile(path: Path) -> CostProfile:
    """Read the costs the advisor needs from a profile of `imgflow profile`.

    `load_profile` reads and checks the file. Raises UsageError naming the
    file and each invalid key, and how to write a new profile.
    """
    if not path.exists():
        raise UsageError(f"profile {path} not found; {PROFILE_HINT}")
    try:
        profile = load_profile(path)
    except ProfileError as exc:
        hint = PROFILE_HINT[0].upper() + PROFILE_HINT[1:]
        raise UsageError(f"{exc}\n{hint}.") from None
    timing = profile.timing
    seconds = timing.seconds_per_image
    if seconds.mean < MIN_MEAN_SECONDS or timing.peak_rss_bytes <= 0:
        raise UsageError(
            f"invalid profile {path}: timing.seconds_per_image.mean must be at "
            f"least {MIN_MEAN_SECONDS:g} and timing.peak_rss_bytes above 0, got "
            f"{seconds.mean} and {timing.peak_rss_bytes}; {PROFILE_HINT}"
        )
    for key, value in seconds.model_dump().items():
        if value > MAX_SECONDS_PER_IMAGE:
            raise UsageError(
                f"invalid profile {path}: timing.seconds_per_image.{key} must be "
                f"at most {MAX_SECONDS_PER_IMAGE:,.0f} s (a day), got {value}; "
                f"{PROFILE_HINT}"
            )
    sample = profile.sample
    return CostProfile(
        source=str(path),
        estimated=False,
        service=ServiceTimes(
            mean=seconds.mean, p50=seconds.p50, p95=seconds.p95, max=seconds.max
        ),
        p99_seconds=seconds.p99,
        peak_rss_bytes=timing.peak_rss_bytes,
        images_timed=timing.images_timed,
        cores=profile.machine.cores,
        memory_bytes=profile.machine.memory_bytes,
        megapixels_p50=sample.megapixels.p50,
        megapixels_max=sample.megapixels.max,
        io_share=_io_share(timing.stages, seconds.mean),
        progressive=sample.progressive,
        animated=sample.animated,
    )


def _io_share(stages: Mapping[str, StageSummary], mean_seconds: float) -> float | None:
    if not stages:
        return None
    io_seconds = sum(stages[name].mean for name in IO_STAGES if name in stages)
    return min(1.0, io_seconds / mean_seconds)
