"""imgflow: one image pipeline, run under the execution model that fits the load.

The public names are imported on first use, so a worker process that needs
only the pipeline does not pay for the runner, the metrics and the CLI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_MODULE_OF = {
    "PipelineConfig": "imgflow.config",
    "Variant": "imgflow.config",
    "load_config": "imgflow.config",
    "ImgflowError": "imgflow.errors",
    "Reason": "imgflow.errors",
    "Status": "imgflow.errors",
    "Executor": "imgflow.executors",
    "ParallelExecutor": "imgflow.executors",
    "SequentialExecutor": "imgflow.executors",
    "make_executor": "imgflow.executors",
    "Pipeline": "imgflow.pipeline",
    "ImageResult": "imgflow.records",
    "Source": "imgflow.records",
    "RunRequest": "imgflow.runner",
    "RunSummary": "imgflow.runner",
    "collect_sources": "imgflow.runner",
    "execute": "imgflow.runner",
}

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


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'imgflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
