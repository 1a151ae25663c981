"""A run: list the inputs, feed them to an executor, record every outcome.

The coordinating process is the catalog's only writer; workers return
small result records and never touch the catalog.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgflow.catalog import RunInfo, SQLiteCatalog
from imgflow.catalog.sqlite import IN_PROGRESS, PENDING, remedy
from imgflow.config import PipelineConfig
from imgflow.errors import Reason, Status
from imgflow.executors import make_executor
from imgflow.executors.auto import choose_mode
from imgflow.executors.base import RetryPolicy, RunControl
from imgflow.executors.parallel import default_workers
from imgflow.outdir import write_output_file
from imgflow.pipeline import Pipeline
from imgflow.records import ImageResult, Source, display_path
from imgflow.stages.ingest import Filters, IngestIssue, iter_inputs
from imgflow.stages.store import TEMP_PREFIX, OutputLayout, image_key
from imgflow.stats import percentile
from imgflow.telemetry.report import (
    failures_by_reason,
    html_page,
    stage_latency,
    throughput_series,
)

if TYPE_CHECKING:
    # Only a type here: prometheus_client is imported when metrics are served.
    from imgflow.telemetry.metrics import RunMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunRequest:
    """Everything `imgflow run` was asked to do."""

    inputs: Sequence[str]
    out_dir: Path
    config: PipelineConfig
    mode: str = "auto"
    workers: int | None = None
    filters: Filters = Filters()
    list_files: Sequence[str] = ()
    ordered: bool = False
    order_window: int = 32
    time_limit: float | None = None
    queue_size: int = 8
    redo: bool = False
    retries: int = 2
    retry_delay: float = 0.5
    max_worker_rss_mb: int | None = 1024
    small_engine: str = "vips"

    def control(self) -> RunControl:
        """Build the run control that these options ask for."""
        return RunControl(
            max_ahead=self.order_window if self.ordered else None,
            retry=RetryPolicy(attempts=self.retries + 1, base_delay=self.retry_delay),
        )


@dataclass(frozen=True, slots=True)
class Skipped:
    """A source a previous run into the same folder already finished."""

    path: str
    status: str


@dataclass(slots=True)
class RunSummary:
    """The outcome of a run, in input order."""

    mode: str
    workers: int
    results: list[ImageResult]
    issues: list[IngestIssue]
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)
    not_processed: list[Source] = field(default_factory=list)
    mode_reason: str | None = None
    skipped: list[Skipped] = field(default_factory=list)
    catalog_error: str | None = None
    # Images whose outcome the catalog lacks because its write failed: their
    # files may be written, and the next run processes them again.
    not_recorded: list[Source] = field(default_factory=list)
    # Seconds since the run started at which each result arrived, by
    # source index.
    finished_at: dict[int, float] = field(default_factory=dict)

    @property
    def all_done(self) -> bool:
        """True when every input is done, in this run or an earlier one."""
        done = self.counts.get(Status.DONE.value, 0)
        earlier = all(item.status == Status.DONE.value for item in self.skipped)
        complete = done == len(self.results) and not self.not_processed
        return complete and earlier and not self.issues and not self.catalog_error

    @property
    def images_per_second(self) -> float:
        return len(self.results) / self.seconds if self.seconds > 0 else 0.0

    def latency(self, quantile: float) -> float | None:
        """Per-image processing time at `quantile`, nearest-rank, in seconds."""
        return percentile((result.seconds for result in self.results), quantile)

    def _image_report(self, result: ImageResult) -> dict[str, Any]:
        report = result.to_report()
        # Every input of a batch run arrives at its start, so this is the
        # time a caller waited for the image's result.
        report["finished_seconds"] = _round(self.finished_at.get(result.source.index))
        return report

    def to_report(self) -> dict[str, Any]:
        return {
            "summary": {
                "mode": self.mode,
                "mode_reason": self.mode_reason,
                "workers": self.workers,
                "images": len(self.results),
                "done": self.counts.get("done", 0),
                "rejected": self.counts.get("rejected", 0),
                "failed": self.counts.get("failed", 0),
                "not_processed": len(self.not_processed),
                "skipped": len(self.skipped),
                "catalog_error": self.catalog_error,
                "not_recorded": len(self.not_recorded),
                "seconds": round(self.seconds, 3),
                "images_per_second": round(self.images_per_second, 3),
                "p50_seconds": _round(self.latency(0.50)),
                "p95_seconds": _round(self.latency(0.95)),
                "p99_seconds": _round(self.latency(0.99)),
            },
            "throughput": throughput_series(
                sorted(self.finished_at.values()), self.seconds
            ),
            "stages": stage_latency(self.results),
            "failures_by_reason": failures_by_reason(self.results),
            "images": [self._image_report(result) for result in self.results],
            "issues": [
                {"path": display_path(i.path), "message": i.message}
                for i in self.issues
            ],
            "not_processed": [source.text for source in self.not_processed],
            "not_recorded": [source.text for source in self.not_recorded],
            "skipped": [
                {"source": display_path(i.path), "status": i.status}
                for i in self.skipped
            ],
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def collect_sources(request: RunRequest) -> tuple[list[Source], list[IngestIssue]]:
    """List every input file (paths only, nothing is read yet)."""
    sources: list[Source] = []
    issues: list[IngestIssue] = []
    found = iter_inputs(
        request.inputs,
        filters=request.filters,
        list_files=request.list_files,
        skip_folders=[request.out_dir],
    )
    for item in found:
        if isinstance(item, IngestIssue):
            if item.path != "-":
                # Reports give every path in full, as they do each source.
                item = replace(item, path=os.path.abspath(item.path))
            source_text = display_path(item.path)
            log.warning(
                "input not read: %s: %s",
                source_text,
                item.message,
                extra={"event": "input_not_read", "source": source_text},
            )
            issues.append(item)
        else:
            sources.append(_source(len(sources), os.path.abspath(item)))
    return sources, issues


def _source(index: int, path: str) -> Source:
    try:
        info = os.stat(path)
    except OSError:
        return Source(index=index, path=path)
    return Source(index=index, path=path, size=info.st_size, mtime_ns=info.st_mtime_ns)


def split_finished(
    sources: list[Source], catalog: SQLiteCatalog, config_sha256: str, out_dir: Path
) -> tuple[list[Source], list[Skipped]]:
    """Separate sources a previous run finished from those still to run.

    A source counts as finished when the catalog has a final state for it
    under the same config, the file's size and modification time are
    unchanged, and every output of a done image is still on disk: each
    variant at the size recorded, and the sidecar. The sources to run are
    numbered afresh from 0, in input order.
    """
    finished = catalog.completed(config_sha256)
    layout = OutputLayout(out_dir)
    # Copies of one photo with the same name share their output files, and
    # the copy written last sets the files' modification time, so a file
    # is intact if it matches what any of them recorded.
    recorded: dict[str, set[tuple[int, int | None]]] = {}
    for image in finished.values():
        for path, size, mtime_ns in image["variants"]:
            recorded.setdefault(path, set()).add((size, mtime_ns))
    to_run: list[Source] = []
    skipped: list[Skipped] = []
    for source in sources:
        row = finished.get(source.text)
        unchanged = (
            row is not None
            and row["source_size"] == source.size
            and row["source_mtime_ns"] == source.mtime_ns
            and _outputs_intact(layout, row, recorded)
        )
        if row is not None and unchanged:
            skipped.append(Skipped(source.path, row["status"]))
        else:
            to_run.append(replace(source, index=len(to_run)))
    return to_run, skipped


def _regular_file(path: Path) -> os.stat_result | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info if stat.S_ISREG(info.st_mode) else None


def _variant_intact(path: Path, recorded: set[tuple[int, int | None]]) -> bool:
    info = _regular_file(path)
    if info is None:
        return False
    return any(
        info.st_size == size and (mtime_ns is None or info.st_mtime_ns == mtime_ns)
        for size, mtime_ns in recorded
    )


def _outputs_intact(
    layout: OutputLayout,
    row: dict[str, Any],
    recorded: dict[str, set[tuple[int, int | None]]],
) -> bool:
    """True when a finished image's variants and sidecar are all on disk.

    A variant must have a size and a modification time that the catalog
    recorded for its path (`recorded`). Like rsync's quick check, this
    catches a file replaced or cut short since, without reading it.
    """
    if not all(
        _variant_intact(layout.root / path, recorded[path])
        for path, _size, _mtime_ns in row["variants"]
    ):
        return False
    return (
        not row["variants"]
        or _regular_file(layout.sidecar_path(row["key"])) is not None
    )


def in_input_order(
    results: Iterator[ImageResult], first_index: int = 0
) -> Iterator[ImageResult]:
    """Re-emit results by source index, holding early ones back.

    The executor's ordering window bounds how many are held. Results left
    behind a gap when the stream ends (a stopped run) follow in order.
    """
    held: dict[int, ImageResult] = {}
    expected = first_index
    for result in results:
        held[result.source.index] = result
        while expected in held:
            yield held.pop(expected)
            expected += 1
    for index in sorted(held):
        yield held[index]


def _remove_stale_temporaries(out_dir: Path) -> None:
    # NOTE: assumes one run at a time per output folder; a concurrent run's
    # in-progress temporary files would be removed too.
    for path in out_dir.rglob(f"{TEMP_PREFIX}*"):
        log.info("removing temporary file left by an interrupted run: %s", path)
        path.unlink(missing_ok=True)


def execute(
    request: RunRequest,
    sources: list[Source],
    issues: list[IngestIssue],
    *,
    on_result: Callable[[ImageResult], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    control: RunControl | None = None,
    pipeline: Pipeline | None = None,
    metrics: RunMetrics | None = None,
) -> RunSummary:
    """Run the pipeline over `sources` and record each outcome in the catalog.

    A KeyboardInterrupt (a second stop request) ends the run early; what
    finished is still recorded and the rest is listed as not processed.
    `metrics`, when given, observes every result and the live executor.
    """
    layout = OutputLayout(request.out_dir)
    request.out_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(request.out_dir)
    if control is None:
        control = request.control()
    if pipeline is None:
        pipeline = Pipeline(request.config, request.out_dir)
    config_sha256 = request.config.digest()
    catalog = SQLiteCatalog(layout.catalog)
    skipped: list[Skipped] = []
    if not request.redo:
        with catalog.errors_as_usage_errors("be read"):
            sources, skipped = split_finished(
                sources, catalog, config_sha256, request.out_dir
            )
        if skipped:
            log.info(
                "%d images already finished with this config; skipped", len(skipped)
            )
    workers = request.workers
    if sources:
        # More workers than images would only add start-up time.
        workers = min(workers or default_workers(), len(sources))
    mode, mode_reason = request.mode, None
    if mode == "auto":
        choice = choose_mode(
            sources,
            request.config,
            workers or default_workers(),
            time_limit=request.time_limit,
        )
        mode, mode_reason = choice.mode, choice.reason
        log.info("mode %s chosen: %s", mode, mode_reason)
    executor = make_executor(
        mode,
        workers,
        time_limit=request.time_limit,
        queue_size=request.queue_size,
        max_rss=request.max_worker_rss_mb * 2**20
        if request.max_worker_rss_mb
        else None,
        small_engine=request.small_engine,
    )
    with catalog.errors_as_usage_errors("start the run"):
        run_id = catalog.start_run(
            RunInfo(
                mode=executor.name,
                workers=executor.workers,
                config_sha256=config_sha256,
                inputs=list(request.inputs),
                config_json=request.config.to_json(),
            )
        )
        catalog.mark(PENDING, sources)
    if metrics is not None:
        metrics.attach(control, len(sources))
    if on_start is not None:
        on_start(len(sources))
    log.info(
        "run %d started: %d images, mode %s, workers %d, output %s",
        run_id,
        len(sources),
        executor.name,
        executor.workers,
        request.out_dir,
        extra={
            "event": "run_started",
            "run_id": run_id,
            "images": len(sources),
            "mode": executor.name,
            "workers": executor.workers,
            "out_dir": str(request.out_dir),
            "config_sha256": config_sha256,
        },
    )
    started = time.perf_counter()
    results: list[ImageResult] = []
    finished_at: dict[int, float] = {}
    begun: dict[int, Source] = {}
    catalog_error: str | None = None
    not_recorded: list[Source] = []
    stream = executor.run(pipeline, sources, control)
    if request.ordered:
        stream = in_input_order(stream)
    try:
        for result in stream:
            results.append(result)
            finished_at[result.source.index] = time.perf_counter() - started
            _log_outcome(result, run_id)
            if metrics is not None:
                metrics.observe(result)
            if catalog_error is None:
                catalog_error = _record(catalog, run_id, result, control, begun, layout)
            if catalog_error is not None:
                not_recorded.append(result.source)
            begun.pop(result.source.index, None)
            if on_result is not None:
                on_result(result)
    except KeyboardInterrupt:
        if control.abandoned:
            # A further request after the run was abandoned: stop at once,
            # once the finally block below has recorded what finished.
            raise
        control.request_stop()
        control.request_stop()
    finally:
        seconds = time.perf_counter() - started
        results.sort(key=lambda r: r.source.index)
        counts = dict(Counter(r.status.value for r in results))
        if control.abandoned:
            log.warning("run %d abandoned: in-flight images were not finished", run_id)
            begun.update((s.index, s) for s in control.take_started())
            _remove_abandoned_outputs(request, layout, catalog, begun.values(), results)
        try:
            # Images a stop left unfinished, including those admitted but
            # never started, are pending again, as at the start of the run.
            finished = {result.source.index for result in results}
            catalog.mark(PENDING, [s for s in sources if s.index not in finished])
            catalog.finish_run(run_id, counts)
        except sqlite3.Error as exc:
            catalog_error = catalog_error or f"catalog write failed: {exc}"
        catalog.close()
        if metrics is not None:
            metrics.detach()

    finished = {result.source.index for result in results}
    summary = RunSummary(
        mode=executor.name,
        workers=executor.workers,
        results=results,
        issues=issues,
        seconds=seconds,
        counts=counts,
        not_processed=[s for s in sources if s.index not in finished],
        mode_reason=mode_reason,
        skipped=skipped,
        catalog_error=catalog_error,
        not_recorded=not_recorded,
        finished_at=finished_at,
    )
    log.info(
        "run %d finished in %.1f s: %s%s",
        run_id,
        seconds,
        ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no images",
        f", {len(summary.not_processed)} not processed"
        if summary.not_processed
        else "",
        extra={
            "event": "run_finished",
            "run_id": run_id,
            "seconds": round(seconds, 3),
            "not_processed": len(summary.not_processed),
            "not_read": len(issues),
            "not_recorded": len(not_recorded),
            **{
                status: counts.get(status, 0)
                for status in ("done", "rejected", "failed")
            },
        },
    )
    return summary


def _record(
    catalog: SQLiteCatalog,
    run_id: int,
    result: ImageResult,
    control: RunControl,
    begun: dict[int, Source],
    layout: OutputLayout,
) -> str | None:
    """Journal one outcome; on a catalog failure, stop intake and return the error.

    Output files of an earlier outcome that this one replaced are removed.
    """
    started = control.take_started()
    begun.update((source.index, source) for source in started)
    try:
        catalog.mark(IN_PROGRESS, started)
        stale = catalog.record(run_id, result)
    except sqlite3.Error as exc:
        message = f"catalog write failed: {exc}; {remedy(catalog.path, exc)}"
        log.error("%s; no further images are started", message)
        control.request_stop()
        return message
    for relative in stale:
        path = layout.root / relative
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            # Another file or a folder now has its name, so it is kept.
            log.warning("cannot remove the earlier output %s: %s", path, exc.strerror)
            continue
        with contextlib.suppress(OSError):
            # A variant dropped from the config leaves no empty folder behind.
            path.parent.rmdir()
    return None


def _remove_abandoned_outputs(
    request: RunRequest,
    layout: OutputLayout,
    catalog: SQLiteCatalog,
    begun: Iterable[Source],
    results: list[ImageResult],
) -> None:
    """Remove what images abandoned mid-run wrote, and temporary files.

    Their complete variants may already be renamed into place although the
    catalog has no record of them. An image recorded as done by another
    source with the same key keeps its files.
    """
    _remove_stale_temporaries(request.out_dir)
    finished = {result.source.index for result in results}
    for source in begun:
        if source.index in finished:
            continue
        try:
            digest = hashlib.sha256(Path(source.path).read_bytes()).hexdigest()
        except OSError:
            continue
        key = image_key(source.path, digest)
        if catalog.is_recorded_done(key):
            continue
        for name, variant in request.config.variants.items():
            layout.variant_path(name, key, variant.format.suffix).unlink(
                missing_ok=True
            )
        layout.sidecar_path(key).unlink(missing_ok=True)


def _log_outcome(result: ImageResult, run_id: int) -> None:
    """Log one line per image: INFO when done or rejected, WARNING when failed.

    An image whose worker was lost or ended by the time limit is logged at
    ERROR. Unexpected errors were already logged at ERROR, with their
    traceback, where they were caught.
    """
    fields = {
        "event": "image",
        "run_id": run_id,
        "source": result.source.text,
        "status": result.status.value,
        "stage": result.stage,
        "reason": result.reason.value if result.reason else None,
        "seconds": round(result.seconds, 4),
        "attempts": result.attempts,
        "engine": result.engine,
    }
    if result.status is Status.DONE:
        log.info("%s done in %.3f s", result.source.text, result.seconds, extra=fields)
        return
    level = logging.INFO
    if result.reason in (Reason.WORKER_LOST, Reason.TIMED_OUT):
        # A lost or killed worker is an unexpected failure.
        level = logging.ERROR
    elif result.status is Status.FAILED:
        level = logging.WARNING
    log.log(
        level,
        "%s %s at %s: %s (%s)",
        result.source.text,
        result.status.value,
        result.stage,
        result.reason.value if result.reason else "-",
        result.message,
        extra=fields,
    )


def write_report(summary: RunSummary, path: Path) -> None:
    """Write the JSON run report; raises UsageError when it cannot be written."""
    data = json.dumps(summary.to_report(), indent=2, ensure_ascii=False) + "\n"
    write_output_file(path, data.encode(), "--report")


def write_html_report(summary: RunSummary, path: Path) -> None:
    """Write the run report as an HTML page with charts."""
    html_page(summary, summary.to_report()).write(path, "--html")
