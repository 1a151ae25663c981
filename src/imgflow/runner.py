"""A run: list the inputs, feed them to an executor, record every outcome.

The coordinating process is the catalog's only writer; workers return
small result records and never touch the catalog.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgflow.catalog import RunInfo, SQLiteCatalog
from imgflow.config import PipelineConfig
from imgflow.errors import Status
from imgflow.executors import make_executor
from imgflow.pipeline import Pipeline
from imgflow.records import ImageResult, Source
from imgflow.stages.ingest import Filters, IngestIssue, iter_inputs
from imgflow.stages.store import OutputLayout, write_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunRequest:
    """Everything `imgflow run` was asked to do."""

    inputs: Sequence[str]
    out_dir: Path
    config: PipelineConfig
    mode: str = "parallel"
    workers: int | None = None
    filters: Filters = Filters()
    list_files: Sequence[str] = ()


@dataclass(slots=True)
class RunSummary:
    """The outcome of a run, in input order."""

    mode: str
    workers: int
    results: list[ImageResult]
    issues: list[IngestIssue]
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def all_done(self) -> bool:
        return self.counts.get(Status.DONE.value, 0) == len(self.results)

    @property
    def images_per_second(self) -> float:
        return len(self.results) / self.seconds if self.seconds > 0 else 0.0

    def latency(self, quantile: float) -> float | None:
        """Per-image processing time at `quantile`, nearest-rank, in seconds."""
        times = sorted(result.seconds for result in self.results)
        if not times:
            return None
        rank = max(1, math.ceil(quantile * len(times)))
        return times[rank - 1]

    def to_report(self) -> dict[str, Any]:
        return {
            "summary": {
                "mode": self.mode,
                "workers": self.workers,
                "images": len(self.results),
                "done": self.counts.get("done", 0),
                "rejected": self.counts.get("rejected", 0),
                "failed": self.counts.get("failed", 0),
                "seconds": round(self.seconds, 3),
                "images_per_second": round(self.images_per_second, 3),
                "p50_seconds": _round(self.latency(0.50)),
                "p95_seconds": _round(self.latency(0.95)),
            },
            "images": [result.to_report() for result in self.results],
            "issues": [{"path": i.path, "message": i.message} for i in self.issues],
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def collect_sources(request: RunRequest) -> tuple[list[Source], list[IngestIssue]]:
    """List every input file (paths only, nothing is read yet)."""
    sources: list[Source] = []
    issues: list[IngestIssue] = []
    found = iter_inputs(
        request.inputs, filters=request.filters, list_files=request.list_files
    )
    for item in found:
        if isinstance(item, IngestIssue):
            log.warning("skipped %s: %s", item.path, item.message)
            issues.append(item)
        else:
            sources.append(Source(index=len(sources), path=os.path.abspath(item)))
    return sources, issues


def execute(
    request: RunRequest,
    sources: list[Source],
    issues: list[IngestIssue],
    *,
    on_result: Callable[[ImageResult], None] | None = None,
) -> RunSummary:
    """Run the pipeline over `sources` and record each outcome in the catalog."""
    layout = OutputLayout(request.out_dir)
    request.out_dir.mkdir(parents=True, exist_ok=True)
    pipeline = Pipeline(request.config, request.out_dir)
    executor = make_executor(request.mode, request.workers)
    catalog = SQLiteCatalog(layout.catalog)
    run_id = catalog.start_run(
        RunInfo(
            mode=executor.name,
            workers=executor.workers,
            config_sha256=request.config.digest(),
            inputs=list(request.inputs),
        )
    )
    log.info(
        "run %d started: %d images, mode %s, %d workers, output %s",
        run_id,
        len(sources),
        executor.name,
        executor.workers,
        request.out_dir,
    )
    started = time.perf_counter()
    results: list[ImageResult] = []
    try:
        for result in executor.run(pipeline, sources):
            catalog.record(run_id, result)
            results.append(result)
            if result.status is not Status.DONE:
                log.info(
                    "%s %s at %s: %s (%s)",
                    result.source.path,
                    result.status.value,
                    result.stage,
                    result.reason.value if result.reason else "-",
                    result.message,
                )
            if on_result is not None:
                on_result(result)
        seconds = time.perf_counter() - started
        results.sort(key=lambda r: r.source.index)
        counts = dict(Counter(r.status.value for r in results))
        catalog.finish_run(run_id, counts)
    finally:
        catalog.close()
    summary = RunSummary(
        mode=executor.name,
        workers=executor.workers,
        results=results,
        issues=issues,
        seconds=seconds,
        counts=counts,
    )
    log.info(
        "run %d finished in %.1f s: %s",
        run_id,
        seconds,
        ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no images",
    )
    return summary


def write_report(summary: RunSummary, path: Path) -> None:
    data = json.dumps(summary.to_report(), indent=2, ensure_ascii=False) + "\n"
    write_atomic(path, data.encode(), fsync=False)
