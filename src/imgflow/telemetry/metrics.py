"""Prometheus metrics of a run, served over HTTP while it runs.

Every metric is defined once, here, with its unit in its name. Outcomes,
timings, retries and byte counts are observed in the coordinating process
from the result record each worker returns, so a sample is never lost
when a worker dies, and nothing needs the client's multiprocess mode.
Queue depths, images in flight, live workers and worker memory are read
from the running executor each time the endpoint is scraped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from imgflow.errors import RETRYABLE, Status
from imgflow.executors.base import RunControl
from imgflow.records import ImageResult
from imgflow.stages import ingest
from imgflow.telemetry import DEFAULT_METRICS_ADDRESS

log = logging.getLogger(__name__)


# Seconds; from a header-only rejection to a slow decode of a huge image.
IMAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
STAGE_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
)


class RunMetrics:
    """The metrics of the runs in one process, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.images = Counter(
            "imgflow_images",
            "Images finished, by final status and rejection or failure reason.",
            ["status", "reason"],
            registry=self.registry,
        )

        self.image_seconds = Histogram(
            "imgflow_image_duration_seconds",
            "Seconds from the start of an image's last attempt to its result.",
            buckets=IMAGE_BUCKETS,
            registry=self.registry,
        )
        self.latency_seconds = Histogram(
            "imgflow_image_latency_seconds",
            "Seconds from an image's admission to its final result, "
            "including queue waits and retries.",
            buckets=IMAGE_BUCKETS,
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "imgflow_stage_duration_seconds",
            "Seconds an image spent in each pipeline stage.",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )

        self.retries = Counter(
            "imgflow_retries",
            "Failed attempts that were scheduled for another attempt, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "imgflow_dead_letters",
            "Images that failed on every attempt and went to the dead-letter queue.",
            ["reason"],
            registry=self.registry,
        )

        self.read_bytes = Counter(
            "imgflow_read_bytes",
            "Bytes of source files read.",
            registry=self.registry,
        )
        self.written_bytes = Counter(
            "imgflow_written_bytes",
            "Bytes of variant files written.",
            registry=self.registry,
        )
        # Show the failure counters at 0 from the first scrape, so a rate()
        # over them works before the first retry.
        for reason in sorted(RETRYABLE):
            self.retries.labels(reason=reason.value)
            self.dead_letters.labels(reason=reason.value)

        self._live = _LiveCollector()
        self.registry.register(self._live)

    def attach(self, control: RunControl, total: int) -> None:
        """Start reading the live state of a run of `total` images."""
        control.retry_listeners.append(self._observe_retry)
        self._live.attach(control, total)

    def detach(self) -> None:
        self._live.detach()

    def _observe_retry(self, result: ImageResult) -> None:
        self.retries.labels(reason=_reason(result)).inc()

    def observe(self, result: ImageResult) -> None:
        """Count one final result."""
        self.images.labels(status=result.status.value, reason=_reason(result)).inc()
        self.image_seconds.observe(result.seconds)
        if result.latency is not None:
            self.latency_seconds.observe(result.latency)
        for stage, seconds in result.timings.items():
            self.stage_seconds.labels(stage=stage).observe(seconds)
        if result.status is Status.FAILED:
            self.dead_letters.labels(reason=_reason(result)).inc()
        if ingest.STAGE in result.timings and result.source.size is not None:
            self.read_bytes.inc(result.source.size)
        self.written_bytes.inc(sum(variant.bytes for variant in result.variants))
        self._live.finished += 1


def _reason(result: ImageResult) -> str:
    return result.reason.value if result.reason else ""


class _LiveCollector(Collector):
    """Gauges read from the executor of the current run at scrape time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._control: RunControl | None = None
        self._total = 0
        self.finished = 0

    def attach(self, control: RunControl, total: int) -> None:
        with self._lock:
            self._control, self._total, self.finished = control, total, 0

    def detach(self) -> None:
        with self._lock:
            self._control = None

    def collect(self) -> Iterator[Any]:
        depth = GaugeMetricFamily(
            "imgflow_queue_depth",
            "Items waiting in each queue; 'input' is images not yet started.",
            labels=["queue"],
        )
        in_flight = GaugeMetricFamily(
            "imgflow_images_in_flight",
            "Images started and not yet finished, retries waiting included.",
        )
        workers = GaugeMetricFamily(
            "imgflow_workers", "Live worker processes, by pool.", labels=["pool"]
        )
        memory = GaugeMetricFamily(
            "imgflow_worker_resident_memory_bytes",
            "Resident memory of each worker process.",
            labels=["pool", "pid"],
        )
        with self._lock:
            control, total, finished = self._control, self._total, self.finished
        if control is not None:
            probes = control.probes
            started = probes.in_flight()
            depth.add_metric(["input"], max(0, total - finished - started))
            for name, value in probes.queue_depths().items():
                depth.add_metric([name], value)
            in_flight.add_metric([], started)
            for pool, pids in probes.pool_pids().items():
                live = 0
                for pid, rss in _resident(pids):
                    live += 1
                    memory.add_metric([pool, str(pid)], rss)
                workers.add_metric([pool], live)
        yield from (depth, in_flight, workers, memory)


def _resident(pids: list[int]) -> Iterator[tuple[int, int]]:
    for pid in pids:
        try:
            yield pid, psutil.Process(pid).memory_info().rss
        except psutil.Error:
            continue  # Exited since the pool listed it.


@dataclass(slots=True)
class MetricsServer:
    """An HTTP endpoint serving a registry in the Prometheus text format."""

    server: Any
    thread: threading.Thread

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def serve_metrics(
    registry: CollectorRegistry, port: int, address: str = DEFAULT_METRICS_ADDRESS
) -> MetricsServer:
    """Serve `registry` on `address`:`port` (0 picks a free port) until closed.

    Raises OSError when the address cannot be bound.
    """
    server, thread = start_http_server(port, addr=address, registry=registry)
    return MetricsServer(server, thread)
