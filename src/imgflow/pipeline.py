"""The pipeline: one image through ingest, validate, transform, metadata, store.

`Pipeline.process` runs every stage in one call. Executors that spread the
stages over threads and processes call the steps one by one instead:

    load      read the bytes, validate, hash            (I/O, a thread)
    describe  read EXIF, IPTC, XMP and the profile      (cheap, a thread)
    render    decode once, resize, encode the variants  (CPU, a process)
    store     write variants and sidecar atomically     (I/O, a thread)

Between steps an image travels by reference: its path, SHA-256 and header.
A process that renders re-reads the file and checks the hash, so no pixels
or source bytes cross a process boundary. The pipeline holds only
configuration and paths, so it pickles to worker processes.
"""

from __future__ import annotations

import hashlib
import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgflow.config import PipelineConfig
from imgflow.engines import pillow, vips
from imgflow.errors import ImageError, Reason, StageFailed, Status, is_lasting
from imgflow.records import Header, ImageResult, Source
from imgflow.stages import ingest, metadata, store, transform, validate
from imgflow.stages.store import (
    OutputLayout,
    image_key,
    remove_variants,
    store_sidecar,
    store_variants,
)
from imgflow.stages.transform import Rendered

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Loaded:
    """A validated source: everything later steps need except the pixels."""

    source: Source
    header: Header
    sha256: str
    key: str
    started: float
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Described:
    """A loaded source with its metadata read."""

    loaded: Loaded
    metadata: dict[str, Any]
    warnings: list[str]


class StageClock:
    """Seconds spent in each stage of one image, taken as laps of one clock."""

    def __init__(self, timings: dict[str, float] | None = None) -> None:
        self.timings = timings if timings is not None else {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        """Add the time since the previous lap to `stage`."""
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + now - self._last
        self._last = now


def failure(
    source: Source,
    exc: BaseException,
    stage: str,
    started: float,
    timings: dict[str, float] | None = None,
) -> ImageResult:
    """Build the result of an image that could not continue past `stage`."""
    if isinstance(exc, ImageError):
        result = ImageResult(
            source=source,
            status=exc.status,
            stage=exc.stage,
            reason=exc.reason,
            message=exc.message,
            lasting=exc.lasting,
        )
    elif isinstance(exc, OSError):
        # An environment fault that no stage wrapped: worth another attempt
        # unless it is one that lasts.
        log.warning("I/O error in stage %s for %s: %s", stage, source.path, exc)
        result = ImageResult(
            source=source,
            status=Status.FAILED,
            stage=stage,
            reason=Reason.IO_ERROR,
            message=f"{stage} failed: {exc.strerror or exc}",
            lasting=is_lasting(exc),
        )
    else:
        log.error(
            "unexpected error in stage %s for %s", stage, source.path, exc_info=exc
        )
        result = ImageResult(
            source=source,
            status=Status.FAILED,
            stage=stage,
            reason=Reason.INTERNAL_ERROR,
            message=f"{type(exc).__name__}: {exc}",
            traceback="".join(traceback.format_exception(exc)),
        )
    result.seconds = time.perf_counter() - started
    result.timings = dict(timings or {})
    return result


class Pipeline:
    """A configured pipeline writing into one output folder."""

    def __init__(self, config: PipelineConfig, out_dir: Path) -> None:
        self.config = config
        self.layout = OutputLayout(out_dir)

    def read(self, source: Source) -> bytes:
        return ingest.read_source(source.path, self.config.validation)

    def load(self, source: Source, data: bytes | None = None) -> Loaded:
        """Read (unless `data` is given) and validate one source."""
        clock = StageClock()
        started = time.perf_counter()
        if data is None:
            data = self.read(source)
            clock.lap(ingest.STAGE)
        header = validate.validate(data, self.config.validation)
        validate.check_kept_frames(header, self.config)
        sha256 = hashlib.sha256(data).hexdigest()
        clock.lap(validate.STAGE)
        key = image_key(source.path, sha256)
        return Loaded(source, header, sha256, key, started, clock.timings)

    def describe(self, loaded: Loaded, data: bytes) -> Described:
        clock = StageClock(loaded.timings)
        fields, warnings = metadata.read_metadata(data, loaded.header, loaded.sha256)
        transform_config = self.config.transform
        animates = any(v.format.animates for v in self.config.variants.values())
        if (
            transform_config.animation == "keep"
            and animates
            and loaded.header.pages > transform_config.max_frames
        ):
            warnings.append(
                f"animation has {loaded.header.pages} frames; only the first "
                f"{transform_config.max_frames} are kept (transform.max_frames)"
            )
        clock.lap(metadata.STAGE)
        return Described(loaded, fields, warnings)

    def read_verified(self, loaded: Loaded) -> bytes:
        """Read a loaded source again and check it still has the same bytes."""
        data = self.read(loaded.source)
        if hashlib.sha256(data).hexdigest() != loaded.sha256:
            raise StageFailed(
                Reason.SOURCE_CHANGED,
                f"{loaded.source.path} changed after it was validated",
                stage=ingest.STAGE,
            )
        return data

    def render(
        self, loaded: Loaded, data: bytes, *, engine: str = "vips"
    ) -> list[Rendered]:
        """Decode once and encode every variant; the cost of a whole image.

        `engine="pillow"` takes the Pillow fast path where it applies
        (`pillow.can_render`) and libvips elsewhere.
        """
        header = loaded.header
        display_width, display_height = header.display_size
        plans = transform.plan_variants(self.config, display_width, display_height)
        if (
            engine == "pillow"
            and pillow.can_render(header, self.config)
            and pillow.has_photo_density(len(data), header)
            # Otherwise libvips renders it, or rejects it as the other models do.
            and vips.jpeg_scan_is_clean(data)
        ):
            exif = metadata.exif_for_output(data, self.config.output)
            return pillow.render(data, header, plans, self.config, exif)
        return vips.render(data, header, plans, self.config)

    def store(self, described: Described, rendered: list[Rendered]) -> ImageResult:
        loaded = described.loaded
        clock = StageClock(loaded.timings)
        fsync = self.config.output.fsync
        variants = store_variants(self.layout, loaded.key, rendered, fsync=fsync)
        try:
            store_sidecar(
                self.layout,
                loaded.key,
                described.metadata,
                variants,
                described.warnings,
                fsync=fsync,
            )
        except StageFailed:
            # An image is stored whole or not at all, sidecar included.
            remove_variants(self.layout, variants)
            raise
        clock.lap(store.STAGE)
        return ImageResult(
            source=loaded.source,
            status=Status.DONE,
            key=loaded.key,
            sha256=loaded.sha256,
            variants=variants,
            metadata=described.metadata,
            warnings=described.warnings,
            seconds=time.perf_counter() - loaded.started,
            engine=rendered[0].engine if rendered else None,
            timings=dict(loaded.timings),
        )

    def process(self, source: Source, *, engine: str = "vips") -> ImageResult:
        """Run every stage on one source; a bad image becomes a rejected or failed result."""
        started = time.perf_counter()
        clock = StageClock()
        stage = ingest.STAGE
        try:
            data = self.read(source)
            clock.lap(stage)
            stage = validate.STAGE
            loaded = self.load(source, data)
            loaded.timings[ingest.STAGE] = clock.timings[ingest.STAGE]
            clock = StageClock(loaded.timings)
            stage = transform.STAGE
            rendered = self.render(loaded, data, engine=engine)
            clock.lap(stage)
            stage = metadata.STAGE
            described = self.describe(loaded, data)
            stage = store.STAGE
            result = self.store(described, rendered)
        except Exception as exc:  # noqa: BLE001 - one image must not end the run
            return failure(source, exc, stage, started, clock.timings)
        result.seconds = time.perf_counter() - started
        return result
