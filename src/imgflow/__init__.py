"""imgflow: one image pipeline, run under the execution model that fits the load."""

from imgflow.config import PipelineConfig, Variant, load_config
from imgflow.errors import ImgflowError, Reason, Status
from imgflow.executors import (
    Executor,
    ParallelExecutor,
    SequentialExecutor,
    make_executor,
)
from imgflow.pipeline import Pipeline
from imgflow.records import ImageResult, Source
from imgflow.runner import RunRequest, RunSummary, collect_sources, execute

__all__ = [
    "Executor",
    "ImageResult",
    "ImgflowError",
    "ParallelExecutor",
    "Pipeline",
    "PipelineConfig",
    "Reason",
    "RunRequest",
    "RunSummary",
    "SequentialExecutor",
    "Source",
    "Status",
    "Variant",
    "collect_sources",
    "execute",
    "load_config",
    "make_executor",
]
