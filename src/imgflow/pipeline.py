"""The pipeline: one image through ingest, validate, transform, metadata, store.

Every executor calls `Pipeline.process` with a `Source` and gets back an
`ImageResult`; the pipeline holds only configuration and paths, so it pickles
to worker processes, and the same stage code runs under every model.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

from imgflow.config import PipelineConfig
from imgflow.engines import vips
from imgflow.errors import ImageError, Reason, Status
from imgflow.records import ImageResult, Source
from imgflow.stages import ingest, metadata, store, transform, validate
from imgflow.stages.store import OutputLayout, image_key, store_sidecar, store_variants

log = logging.getLogger(__name__)


class Pipeline:
    """A configured pipeline writing into one output folder."""

    def __init__(self, config: PipelineConfig, out_dir: Path) -> None:
        self.config = config
        self.layout = OutputLayout(out_dir)

    def process(self, source: Source) -> ImageResult:
        """Run every stage on one source; never raises for a bad image."""
        started = time.perf_counter()
        stage = ingest.STAGE
        try:
            data = ingest.read_source(source.path, self.config.validation)
            stage = validate.STAGE
            header = validate.validate(data, self.config.validation)
            sha256 = hashlib.sha256(data).hexdigest()
            key = image_key(source.path, sha256)

            stage = transform.STAGE
            display_width, display_height = header.display_size
            plans = transform.plan_variants(self.config, display_width, display_height)
            rendered = vips.render(data, header, plans, self.config)

            stage = metadata.STAGE
            fields, warnings = metadata.read_metadata(data, header, sha256)

            stage = store.STAGE
            fsync = self.config.output.fsync
            variants = store_variants(self.layout, key, rendered, fsync=fsync)
            store_sidecar(self.layout, key, fields, variants, warnings, fsync=fsync)
            result = ImageResult(
                source=source,
                status=Status.DONE,
                key=key,
                sha256=sha256,
                variants=variants,
                metadata=fields,
                warnings=warnings,
            )
        except ImageError as exc:
            result = ImageResult(
                source=source,
                status=exc.status,
                stage=exc.stage,
                reason=exc.reason,
                message=exc.message,
            )
        except Exception as exc:  # noqa: BLE001 - one image's bug must not end the run
            log.exception("unexpected error in stage %s for %s", stage, source.path)
            result = ImageResult(
                source=source,
                status=Status.FAILED,
                stage=stage,
                reason=Reason.INTERNAL_ERROR,
                message=f"{type(exc).__name__}: {exc}",
            )
        result.seconds = time.perf_counter() - started
        return result
