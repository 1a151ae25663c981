"""Profile a sample of images: what it contains and what each stage costs.

The scan reads every file and checks it with the validate stage's own
rules (signature, byte and pixel limits, a header parse), so it rejects what
a run would reject at validation. No pixels are decoded, so damage that only
a decode finds (a truncated JPEG) is not counted as a rejection here.

The timing runs the whole pipeline, decode included, in this process on a
few images spread over the size range, writing into a scratch folder.

The profile's JSON form is defined once, by the pydantic models below:
`write_profile` writes it and `load_profile` reads and checks it.
"""

from __future__ import annotations

import json
import logging
import statistics
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

import psutil
import pyvips
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from imgflow.advisor.formatting import count
from imgflow.config import PipelineConfig
from imgflow.engines import vips
from imgflow.errors import ImageError, ImgflowError, Status, UsageError
from imgflow.executors.parallel import default_workers
from imgflow.measure import TreeSampler, Usage
from imgflow.outdir import write_output_file
from imgflow.pipeline import Pipeline
from imgflow.records import Header, ImageResult, Source
from imgflow.stages import ingest, metadata, store, transform, validate
from imgflow.stats import percentile

log = logging.getLogger(__name__)

SCHEMA_VERSION: Literal[1] = 1
DEFAULT_TIMED_IMAGES = 10
STAGES = (ingest.STAGE, validate.STAGE, transform.STAGE, metadata.STAGE, store.STAGE)
# Formats whose extra pages are frames of one animation. A multi-page TIFF or
# HEIC contains separate images, so it does not count as animated.
ANIMATED_FORMATS = frozenset({"gif", "webp"})


class ProfileError(UsageError):
    """Raised when a profile file cannot be read or does not match the schema."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"invalid profile {path}: {message}")
        self.path = path


class EmptySampleError(ImgflowError):
    """Raised when no image of a sample passed validation, or none of the
    timed images finished the pipeline, so there is nothing to measure."""


class ProfileInterrupted(ImgflowError):
    """Raised when a stop request ends the scan or the timing between images."""


# --- The JSON schema -------------------------------------------------------


class _Model(BaseModel):
    # Infinity and NaN, which Python's json module reads and writes, are
    # rejected: no measured size, time or count is infinite.
    model_config = ConfigDict(
        strict=True, extra="forbid", frozen=True, allow_inf_nan=False
    )


Count = Annotated[int, Field(ge=0)]
Amount = Annotated[float, Field(ge=0)]
DigitKey = Annotated[str, StringConstraints(pattern=r"^[0-9]+$")]


class ByteSummary(_Model):
    """File sizes in bytes. min, p50, p95 and max are sizes that occurred."""

    min: Count
    p50: Count
    p95: Count
    max: Count
    mean: Amount


class Summary(_Model):
    """A distribution of non-negative values, such as megapixels per image."""

    min: Amount
    p50: Amount
    p95: Amount
    max: Amount
    mean: Amount


class LatencySummary(_Model):
    """Seconds per image over the timed images."""

    mean: Amount
    p50: Amount
    p95: Amount
    p99: Amount
    max: Amount


class StageSummary(_Model):
    """Seconds one stage took per image over the timed images."""

    mean: Amount
    p50: Amount
    p95: Amount


class Machine(_Model):
    """The machine the profile was measured on."""

    cores: Annotated[int, Field(ge=1)]
    memory_bytes: Annotated[int, Field(ge=1)]


class SampleProfile(_Model):
    """Counts, sizes and header facts of the scanned files.

    Every field after `rejections` describes the images that passed
    validation, so each of the count tables adds up to `images`.
    """

    files: Count
    images: Annotated[int, Field(ge=1)]
    rejected: Count
    rejections: dict[str, Count]
    formats: dict[str, Count]
    bytes: ByteSummary
    megapixels: Summary
    progressive: Count
    animated: Count
    with_exif: Count
    colour_modes: dict[str, Count]
    bit_depths: dict[DigitKey, Count]

    @model_validator(mode="after")
    def _check_totals(self) -> SampleProfile:
        if self.images + self.rejected != self.files:
            raise ValueError(
                f"images ({self.images}) plus rejected ({self.rejected}) "
                f"must equal files ({self.files})"
            )
        tables = {
            "rejections": (self.rejections, self.rejected, "rejected"),
            "formats": (self.formats, self.images, "images"),
            "colour_modes": (self.colour_modes, self.images, "images"),
            "bit_depths": (self.bit_depths, self.images, "images"),
        }
        for name, (table, expected, against) in tables.items():
            total = sum(table.values())
            if total != expected:
                raise ValueError(
                    f"{name} add up to {total}, expected {against} ({expected})"
                )
        for name in ("progressive", "animated", "with_exif"):
            if getattr(self, name) > self.images:
                raise ValueError(f"{name} is more than images ({self.images})")
        return self


class TimingProfile(_Model):
    """Seconds and memory the pipeline took on the timed images."""

    images_timed: Annotated[int, Field(ge=1)]
    seconds_per_image: LatencySummary
    stages: dict[str, StageSummary]
    seconds_per_megapixel: Amount
    peak_rss_bytes: Count


class Profile(_Model):
    """A sample's profile, as written by `imgflow profile --json`."""

    version: Literal[1]
    created: AwareDatetime
    machine: Machine
    config_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    sample: SampleProfile
    timing: TimingProfile

    @field_validator("created")
    @classmethod
    def _check_utc(cls, value: datetime) -> datetime:
        if value.utcoffset() != timedelta(0):
            raise ValueError("must be in UTC (a 'Z' or '+00:00' suffix)")
        return value


def _describe_error(error: ErrorDetails) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if error["type"] == "missing":
        return f"{key}: missing key"
    return f"{key}: {message} (got {error.get('input')!r})"


def load_profile(path: Path) -> Profile:
    """Read a profile written by `imgflow profile --json` and check its schema.

    Raises ProfileError naming the file and each bad key.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(
            path, "file not found; write one with `imgflow profile SAMPLE --json FILE`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(path, f"cannot read the file: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileError(path, f"not valid JSON: {exc}") from None
    if isinstance(data, dict) and data.get("version") != SCHEMA_VERSION:
        raise ProfileError(
            path,
            f"version: expected {SCHEMA_VERSION}, got {data.get('version')!r}; "
            "write the profile again with this imgflow",
        )
    try:
        return Profile.model_validate_json(text)
    except ValidationError as exc:
        errors = [_describe_error(error) for error in exc.errors()]
        raise ProfileError(path, "\n  " + "\n  ".join(errors)) from None


def write_profile(profile: Profile, path: Path, option: str = "--json") -> None:
    """Write the profile as JSON, atomically.

    Raises UsageError naming the command-line `option` when `path` is not
    a regular file in a writable folder, or the write fails.
    """
    text = profile.model_dump_json(indent=2) + "\n"
    write_output_file(path, text.encode(), option)


def machine_facts() -> Machine:
    """Return the usable cores (CPU affinity) and the physical memory."""
    return Machine(cores=default_workers(), memory_bytes=psutil.virtual_memory().total)


# --- Scanning --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScannedImage:
    """An image that passed validation, with the facts read from its header."""

    source: Source
    header: Header
    size_bytes: int
    has_exif: bool

    @property
    def megapixels(self) -> float:
        """Pixels of one frame, in millions."""
        return self.header.pixels / 1e6


@dataclass(frozen=True, slots=True)
class Scan:
    """The outcome of scanning every file of a sample."""

    files: int
    images: list[ScannedImage]
    rejections: dict[str, int]


def _has_exif(data: bytes) -> bool:
    try:
        image = pyvips.Image.new_from_buffer(data, "", access="sequential")
    except pyvips.Error:
        return False
    return bool(image.get_typeof("exif-data"))


def scan(
    sources: Iterable[Source],
    config: PipelineConfig,
    stop: threading.Event | None = None,
) -> Scan:
    """Validate every source and read its header facts.

    Cost: each file is read whole, one at a time, and its header is parsed
    twice (validation, then the EXIF check). Pixels stay encoded. Raises
    ProfileInterrupted when `stop` is set before the next file.
    """
    files = 0
    images: list[ScannedImage] = []
    rejections: Counter[str] = Counter()
    for source in sources:
        if stop is not None and stop.is_set():
            raise ProfileInterrupted(
                f"stopped during the scan, after {count(files, 'file')}"
            )
        files += 1
        try:
            data = ingest.read_source(source.path, config.validation)
            header = validate.validate(data, config.validation)
        except ImageError as exc:
            log.info("%s %s: %s", source.text, exc.reason.value, exc.message)
            rejections[exc.reason.value] += 1
            continue
        images.append(ScannedImage(source, header, len(data), _has_exif(data)))
    return Scan(files=files, images=images, rejections=dict(rejections))


def _summary(values: Sequence[float]) -> Summary:
    return Summary(
        min=round(min(values), 6),
        p50=round(_percentile(values, 0.50), 6),
        p95=round(_percentile(values, 0.95), 6),
        max=round(max(values), 6),
        mean=round(statistics.fmean(values), 6),
    )


def _percentile(values: Sequence[float], quantile: float) -> float:
    value = percentile(values, quantile)
    if value is None:
        raise ValueError("percentile of an empty sequence")
    return value


def summarise_scan(result: Scan) -> SampleProfile:
    """Count formats, sizes and header facts of the images that passed."""
    images = result.images
    if not images:
        raise EmptySampleError(
            f"no file passed validation ({count(result.files, 'file')} scanned: "
            f"{_describe_counts(result.rejections)}); nothing to profile"
        )
    sizes = [image.size_bytes for image in images]
    headers = [image.header for image in images]
    return SampleProfile(
        files=result.files,
        images=len(images),
        rejected=sum(result.rejections.values()),
        rejections=_sorted_counts(result.rejections),
        formats=_sorted_counts(Counter(header.format for header in headers)),
        bytes=ByteSummary(
            min=min(sizes),
            p50=int(_percentile(sizes, 0.50)),
            p95=int(_percentile(sizes, 0.95)),
            max=max(sizes),
            mean=round(statistics.fmean(sizes), 1),
        ),
        megapixels=_summary([image.megapixels for image in images]),
        progressive=sum(h.format == "jpeg" and h.progressive for h in headers),
        animated=sum(h.format in ANIMATED_FORMATS and h.pages > 1 for h in headers),
        with_exif=sum(image.has_exif for image in images),
        colour_modes=_sorted_counts(Counter(h.interpretation for h in headers)),
        bit_depths=_sorted_counts(Counter(str(h.bit_depth) for h in headers)),
    )


def _sorted_counts(counts: dict[str, int]) -> dict[str, int]:
    """Order a count table by count, largest first, then by name."""
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _describe_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in _sorted_counts(counts).items())


# --- Timing ----------------------------------------------------------------


def spread(images: Sequence[ScannedImage], count: int) -> list[ScannedImage]:
    """Pick `count` images evenly spaced from smallest to largest pixel count.

    The smallest and the largest are always picked when `count` is 2 or
    more, and a single pick is the median image.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    ordered = sorted(images, key=lambda image: (image.header.pixels, image.size_bytes))
    if len(ordered) <= count:
        return ordered
    if count == 1:
        return [ordered[len(ordered) // 2]]
    step = (len(ordered) - 1) / (count - 1)
    return [ordered[round(index * step)] for index in range(count)]


@dataclass(frozen=True, slots=True)
class Timed:
    """The results of the timed images, in the order they ran."""

    images: list[ScannedImage]
    results: list[ImageResult]
    usage: Usage

    @property
    def unfinished(self) -> list[ImageResult]:
        return [result for result in self.results if result.status is not Status.DONE]


def time_images(
    images: Sequence[ScannedImage],
    config: PipelineConfig,
    out_dir: Path,
    stop: threading.Event | None = None,
) -> Timed:
    """Run the whole pipeline on each image, one at a time, in this process.

    libvips is set up as in sequential mode, so it may use several threads
    on one image. The smallest image runs once first, untimed, so one-time
    start-up costs (loading codecs and colour profiles) are not charged to
    the timed images. Outputs are written into `out_dir`, which the caller
    removes. Raises ProfileInterrupted when `stop` is set before the next
    image, because a KeyboardInterrupt cannot stop libvips: it lands in a
    pyvips callback, where cffi prints and discards it.
    """
    ordered = list(images)

    def check_stop(done: int) -> None:
        if stop is not None and stop.is_set():
            raise ProfileInterrupted(
                f"stopped during the timing, after {done} of "
                f"{count(len(ordered), 'image')}"
            )

    vips.configure_worker(threads=None)
    pipeline = Pipeline(config, out_dir)
    if ordered:
        check_stop(0)
        pipeline.process(min(ordered, key=lambda i: i.header.pixels).source)
    results: list[ImageResult] = []
    with TreeSampler() as sampler:
        for image in ordered:
            check_stop(len(results))
            results.append(pipeline.process(image.source))
    assert sampler.usage is not None
    return Timed(images=ordered, results=results, usage=sampler.usage)


def summarise_timing(timed: Timed) -> TimingProfile:
    """Summarise seconds per image and per stage over the images that finished."""
    pairs = [
        (image, result)
        for image, result in zip(timed.images, timed.results, strict=True)
        if result.status is Status.DONE
    ]
    if not pairs:
        raise EmptySampleError(
            f"no timed image finished the pipeline "
            f"({count(len(timed.results), 'image')} timed); nothing to time"
        )
    seconds = [result.seconds for _, result in pairs]
    stages: dict[str, StageSummary] = {}
    for stage in STAGES:
        values = [r.timings[stage] for _, r in pairs if stage in r.timings]
        if values:
            stages[stage] = StageSummary(
                mean=round(statistics.fmean(values), 6),
                p50=round(_percentile(values, 0.50), 6),
                p95=round(_percentile(values, 0.95), 6),
            )
    megapixels = sum(image.megapixels for image, _ in pairs)
    return TimingProfile(
        images_timed=len(pairs),
        seconds_per_image=LatencySummary(
            mean=round(statistics.fmean(seconds), 6),
            p50=round(_percentile(seconds, 0.50), 6),
            p95=round(_percentile(seconds, 0.95), 6),
            p99=round(_percentile(seconds, 0.99), 6),
            max=round(max(seconds), 6),
        ),
        stages=stages,
        seconds_per_megapixel=round(sum(seconds) / megapixels, 6),
        peak_rss_bytes=timed.usage.peak_rss_bytes,
    )


def make_profile(
    config: PipelineConfig, sample: SampleProfile, timing: TimingProfile
) -> Profile:
    """Stamp a sample's profile with the time, the machine and the config."""
    return Profile(
        version=SCHEMA_VERSION,
        created=datetime.now(UTC).replace(microsecond=0),
        machine=machine_facts(),
        config_sha256=config.digest(),
        sample=sample,
        timing=timing,
    )
