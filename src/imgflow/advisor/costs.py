"""Per-image cost of one worker, measured by a profile or estimated.

`read_profile` is the one place that reads a profile file, so the advisor
depends only on `CostProfile`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from imgflow.advisor.simulate import ServiceTimes
from imgflow.errors import UsageError

PROFILE_VERSION = 1
PROFILE_HINT = "write one with `imgflow profile SAMPLE --json FILE`"
ESTIMATE_SOURCE = "built-in estimate"
# Stages that read and write files rather than compute on pixels.
IO_STAGES = ("ingest", "store")


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
    """Read the fields the advisor needs from a profile written by `imgflow profile`.

    Raises UsageError naming the file, the key and the value found.
    """
    document = _load_json(path)
    reader = _Reader(path, document)
    if document.get("version") != PROFILE_VERSION:
        reader.fail(
            f"version: expected {PROFILE_VERSION}, got {document.get('version')!r}"
        )
    per_image = reader.mapping("timing.seconds_per_image")
    seconds = {
        name: reader.number(f"timing.seconds_per_image.{name}", per_image.get(name))
        for name in ("mean", "p50", "p95", "p99", "max")
    }
    if seconds["mean"] <= 0:
        mean = seconds["mean"]
        reader.fail(f"timing.seconds_per_image.mean: expected more than 0, got {mean}")
    timed = reader.integer("timing.images_timed", minimum=1)
    megapixels = reader.mapping("sample.megapixels")
    sample = reader.mapping("sample")
    return CostProfile(
        source=str(path),
        estimated=False,
        service=ServiceTimes(
            mean=seconds["mean"],
            p50=seconds["p50"],
            p95=seconds["p95"],
            max=seconds["max"],
        ),
        p99_seconds=seconds["p99"],
        peak_rss_bytes=reader.integer("timing.peak_rss_bytes", minimum=1),
        images_timed=timed,
        cores=reader.integer("machine.cores", minimum=1),
        memory_bytes=reader.integer("machine.memory_bytes", minimum=1),
        megapixels_p50=reader.number("sample.megapixels.p50", megapixels.get("p50")),
        megapixels_max=reader.number("sample.megapixels.max", megapixels.get("max")),
        io_share=_io_share(reader, seconds["mean"]),
        progressive=reader.integer(
            "sample.progressive", value=sample.get("progressive")
        ),
        animated=reader.integer("sample.animated", value=sample.get("animated")),
    )


def _load_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"profile {path} not found; {PROFILE_HINT}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read profile {path}: {exc}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"invalid profile {path}: not valid JSON ({exc}); {PROFILE_HINT}"
        ) from None
    if not isinstance(document, dict):
        raise UsageError(
            f"invalid profile {path}: expected a JSON object, "
            f"got {type(document).__name__}; {PROFILE_HINT}"
        )
    return document


def _io_share(reader: _Reader, mean_seconds: float) -> float | None:
    stages = reader.mapping("timing.stages")
    if not stages:
        return None
    io_seconds = 0.0
    for name in IO_STAGES:
        stage = stages.get(name)
        if isinstance(stage, Mapping):
            io_seconds += reader.number(f"timing.stages.{name}.mean", stage.get("mean"))
    return min(1.0, io_seconds / mean_seconds)


class _Reader:
    """Typed access to dotted keys, failing with the file and the key named."""

    def __init__(self, path: Path, document: Mapping[str, Any]) -> None:
        self.path = path
        self.document = document

    def fail(self, message: str) -> NoReturn:
        raise UsageError(f"invalid profile {self.path}: {message}; {PROFILE_HINT}")

    def lookup(self, key: str) -> Any:
        value: Any = self.document
        for part in key.split("."):
            if not isinstance(value, Mapping) or part not in value:
                self.fail(f"{key}: missing key")
            value = value[part]
        return value

    def mapping(self, key: str) -> Mapping[str, Any]:
        value = self.lookup(key)
        if not isinstance(value, Mapping):
            self.fail(f"{key}: expected an object, got {value!r}")
        return value

    def number(self, key: str, value: Any) -> float:
        if value is None:
            self.fail(f"{key}: missing key")
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value) or value < 0:
            self.fail(f"{key}: expected a finite number of at least 0, got {value!r}")
        return float(value)

    def integer(self, key: str, *, minimum: int = 0, value: Any = None) -> int:
        if value is None:
            value = self.lookup(key)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"{key}: expected a whole number, got {value!r}")
        if value < minimum:
            self.fail(f"{key}: expected at least {minimum}, got {value}")
        return int(value)
