"""State of a worker process: the pipeline it runs.

Pools start every worker through `start`, so each model's task functions
share one place for the per-process set-up.
"""

from __future__ import annotations

from imgflow.engines import vips
from imgflow.pipeline import Pipeline

_pipeline: Pipeline | None = None


def start(pipeline: Pipeline) -> None:
    """Keep the pipeline for this process and tune libvips for one thread."""
    global _pipeline
    _pipeline = pipeline
    vips.configure_worker(threads=1)


def pipeline() -> Pipeline:
    assert _pipeline is not None, "worker started without a pipeline"
    return _pipeline
