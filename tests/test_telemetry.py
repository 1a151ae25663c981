"""Metrics scraped over HTTP during a run, JSON logs and the run report."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from conftest import jpeg_bytes, quadrant_pixels
from faults import FaultyPipeline
from imgflow.config import parse_config
from imgflow.executors.base import RetryPolicy, RunControl
from imgflow.records import ImageResult
from imgflow.runner import RunRequest, collect_sources, execute, write_html_report
from imgflow.telemetry import logs
from imgflow.telemetry.logs import (
    ContextFilter,
    RepeatFilter,
    configure_logging,
    redact,
)
from imgflow.telemetry.metrics import RunMetrics, serve_metrics
from imgflow.telemetry.report import throughput_series

CONFIG = parse_config({"variants": {"thumb": {"size": 48}, "small": {"size": 96}}})
MODES = ["sequential", "parallel", "pipelined", "hybrid"]


def _inputs(folder: Path, good: int, names: tuple[str, ...] = ()) -> Path:
    folder.mkdir(parents=True)
    for index in range(good):
        image = Image.fromarray(quadrant_pixels(160 + index, 120))
        (folder / f"photo_{index:02d}.jpg").write_bytes(jpeg_bytes(image))
    for name in names:
        image = Image.fromarray(quadrant_pixels(150, 100))
        (folder / f"{name}.jpg").write_bytes(jpeg_bytes(image))
    (folder / "not_an_image.jpg").write_bytes(b"plain text, not a JPEG")
    (folder / "empty.png").write_bytes(b"")
    return folder


def _scrape(url: str) -> dict[str, list]:
    """Fetch the endpoint and return its samples by metric family name."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        family.name: family.samples for family in text_string_to_metric_families(text)
    }


def _value(samples: list, name: str, **labels: str) -> float:
    matching = [
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    return sum(matching)


@pytest.mark.parametrize("mode", MODES)
def test_scraped_counts_match_report(mode: str, tmp_path: Path) -> None:
    """Scraped during the run, the final counts equal the report's."""
    inputs = _inputs(tmp_path / "in", 5, names=("ioerror_once",))
    out = tmp_path / "out"
    request = RunRequest(
        inputs=[str(inputs)], out_dir=out, config=CONFIG, mode=mode, workers=2
    )
    sources, issues = collect_sources(request)
    markers = tmp_path / "markers"
    markers.mkdir()
    pipeline = FaultyPipeline(CONFIG, out, markers=markers)
    control = RunControl(retry=RetryPolicy(attempts=3, base_delay=0.01))
    metrics = RunMetrics()
    server = serve_metrics(metrics.registry, 0)
    scrapes: list[dict[str, list]] = []

    def scrape_now(_result: ImageResult) -> None:
        scrapes.append(_scrape(server.url))

    try:
        summary = execute(
            request,
            sources,
            issues,
            control=control,
            pipeline=pipeline,
            metrics=metrics,
            on_result=scrape_now,
        )
    finally:
        server.close()

    report = summary.to_report()["summary"]
    assert len(scrapes) == len(sources)
    last = scrapes[-1]
    images = last["imgflow_images"]
    assert _value(images, "imgflow_images_total", status="done") == report["done"]
    assert (
        _value(images, "imgflow_images_total", status="rejected") == report["rejected"]
    )
    assert _value(images, "imgflow_images_total", status="failed") == report["failed"]
    assert _value(images, "imgflow_images_total", reason="not_an_image") == 1
    assert _value(images, "imgflow_images_total", reason="empty_file") == 1
    assert (
        _value(last["imgflow_retries"], "imgflow_retries_total", reason="io_error") == 1
    )
    duration = last["imgflow_image_duration_seconds"]
    assert _value(duration, "imgflow_image_duration_seconds_count") == len(sources)
    latency = last["imgflow_image_latency_seconds"]
    assert _value(latency, "imgflow_image_latency_seconds_count") == len(sources)
    for result in summary.results:
        assert result.latency is not None
        assert result.latency >= result.seconds * 0.99
    stages = last["imgflow_stage_duration_seconds"]
    transform_count = _value(
        stages, "imgflow_stage_duration_seconds_count", stage="transform"
    )
    assert transform_count == report["done"]
    source_bytes = sum(
        r.source.size or 0 for r in summary.results if "ingest" in r.timings
    )
    assert (
        _value(last["imgflow_read_bytes"], "imgflow_read_bytes_total") == source_bytes
    )
    written = sum(v.bytes for r in summary.results for v in r.variants)
    assert written > 0
    assert (
        _value(last["imgflow_written_bytes"], "imgflow_written_bytes_total") == written
    )
    # Mid-run gauges. A pipelined run may reject an image on a reader
    # thread before its render pool has started, so look across scrapes.
    assert any(
        s.labels.get("queue") == "input" for s in scrapes[0]["imgflow_queue_depth"]
    )
    workers_seen = max(_value(s["imgflow_workers"], "imgflow_workers") for s in scrapes)
    assert workers_seen >= 1
    memory = [m for s in scrapes for m in s["imgflow_worker_resident_memory_bytes"]]
    assert memory
    assert all(m.value > 0 for m in memory)


def test_scraped_dead_letters_counted(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path / "in", 1, names=("ioerror_transform_always",))
    out = tmp_path / "out"
    request = RunRequest(
        inputs=[str(inputs)], out_dir=out, config=CONFIG, mode="sequential"
    )
    sources, issues = collect_sources(request)
    markers = tmp_path / "markers"
    markers.mkdir()

    metrics = RunMetrics()
    summary = execute(
        request,
        sources,
        issues,
        control=RunControl(retry=RetryPolicy(attempts=2, base_delay=0.01)),
        pipeline=_AlwaysFailing(CONFIG, out, markers=markers),
        metrics=metrics,
    )
    assert summary.counts.get("failed") == 1

    families = {
        f.name: f.samples for f in text_string_to_metric_families(_exposition(metrics))
    }
    dead = _value(
        families["imgflow_dead_letters"],
        "imgflow_dead_letters_total",
        reason="io_error",
    )
    assert dead == 1
    retries = _value(
        families["imgflow_retries"], "imgflow_retries_total", reason="io_error"
    )
    assert retries == 1


def _exposition(metrics: RunMetrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()


class _AlwaysFailing(FaultyPipeline):
    def render(self, loaded, data, *, engine="vips"):  # type: ignore[no-untyped-def]
        if "always" in loaded.source.path:
            raise OSError(5, "Input/output error in render")
        return super().render(loaded, data, engine=engine)


def test_metrics_port_in_use_is_usage_error(tmp_path: Path) -> None:
    metrics = RunMetrics()
    server = serve_metrics(metrics.registry, 0)
    try:
        port = int(server.url.rsplit(":", 1)[1].split("/")[0])
        inputs = _inputs(tmp_path / "in", 1)
        result = subprocess.run(
            [sys.executable, "-m", "imgflow", "run", str(inputs), "--out", str(tmp_path / "out"),
             "--metrics-port", str(port), "-q"],
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
    finally:
        server.close()
    assert result.returncode == 2
    assert f"cannot serve metrics on 127.0.0.1 port {port}" in result.stderr


def test_cli_serves_metrics_and_json_logs(tmp_path: Path) -> None:
    """A real run: scrape its endpoint while it runs, then read its JSON logs."""
    inputs = _inputs(tmp_path / "in", 30)
    command = [
        sys.executable, "-m", "imgflow", "run", str(inputs), "--out", str(tmp_path / "out"),
        "--mode", "parallel", "--workers", "2", "--metrics-port", "0",
        "--log-format", "json", "-v", "--report", str(tmp_path / "report.json"),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    lines: list[str] = []
    scrapes: list[dict[str, list]] = []
    try:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if '"metrics_serving"' in line:
                url = json.loads(line)["url"]
                # Scrape while the run goes on; the first scrape is before
                # any image, because the endpoint opens before the run starts.
                scrapes.append(_scrape(url))
        process.wait(timeout=120)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 1  # Two inputs are rejected.
    assert scrapes, "the metrics endpoint was never announced"
    assert "imgflow_queue_depth" in scrapes[0]

    assert all(line.startswith("{") for line in lines if line.strip()), lines
    records = [json.loads(line) for line in lines if line.strip()]
    assert records
    for record in records:
        for key in ("time", "level", "logger", "message", "pid", "worker"):
            assert key in record, f"{key} missing from {record}"
    events = [r for r in records if r.get("event") == "image"]
    assert len(events) == 32
    assert {e["status"] for e in events} == {"done", "rejected"}
    rejected = [e for e in events if e["status"] == "rejected"]
    assert {e["reason"] for e in rejected} == {"not_an_image", "empty_file"}
    assert [r["event"] for r in records if r.get("event", "").startswith("run_")] == [
        "run_started",
        "run_finished",
    ]
    finished = next(r for r in records if r.get("event") == "run_finished")
    report = json.loads((tmp_path / "report.json").read_text())["summary"]
    assert finished["done"] == report["done"] == 30
    assert finished["rejected"] == report["rejected"] == 2


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logs._settings = None


def test_worker_logs_carry_worker_name(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    """A warning logged inside a worker process comes out as JSON naming it."""
    configure_logging(verbosity=1, log_format="json", stream=sys.stderr)
    inputs = _inputs(tmp_path / "in", 1, names=("ioerror_once",))
    out = tmp_path / "out"
    request = RunRequest(
        inputs=[str(inputs)], out_dir=out, config=CONFIG, mode="parallel", workers=1
    )
    sources, issues = collect_sources(request)
    markers = tmp_path / "markers"
    markers.mkdir()

    execute(
        request,
        sources,
        issues,
        control=RunControl(retry=RetryPolicy(attempts=2, base_delay=0.01)),
        pipeline=FaultyPipeline(CONFIG, out, markers=markers),
    )

    records = [
        json.loads(line)
        for line in capfd.readouterr().err.splitlines()
        if line.startswith("{")
    ]
    from_workers = [r for r in records if r["worker"] != "main"]
    assert from_workers, "no log record came from a worker process"
    io_warning = next(r for r in from_workers if "I/O error" in r["message"])
    assert io_warning["level"] == "WARNING"
    assert io_warning["worker"].startswith("imgflow-")
    main_pids = {r["pid"] for r in records if r["worker"] == "main"}
    assert io_warning["pid"] not in main_pids
    retry = [r for r in records if r["worker"] == "main" and "retrying" in r["message"]]
    assert retry
    assert retry[0]["level"] == "WARNING"


def test_repeat_filter_limits_repeats() -> None:
    repeat = RepeatFilter(limit=3, window=60)
    records = [
        logging.LogRecord(
            "imgflow.x", logging.WARNING, __file__, 1, "bad file %s", (i,), None
        )
        for i in range(10)
    ]
    passed = [record for record in records if repeat.filter(record)]
    assert len(passed) == 3
    assert "further messages like this are suppressed" in passed[-1].getMessage()


def test_repeat_filter_reports_dropped_count() -> None:
    repeat = RepeatFilter(limit=1, window=0.05)

    def record() -> logging.LogRecord:
        return logging.LogRecord(
            "imgflow.x", logging.WARNING, __file__, 1, "stuck", (), None
        )

    assert repeat.filter(record())
    assert not repeat.filter(record())
    assert not repeat.filter(record())
    time.sleep(0.06)
    late = record()
    assert repeat.filter(late)
    assert "(2 similar messages suppressed)" in late.getMessage()


def test_repeat_filter_passes_events_and_errors() -> None:
    repeat = RepeatFilter(limit=1, window=60)
    for _ in range(5):
        event = logging.LogRecord(
            "imgflow.runner", logging.INFO, __file__, 1, "%s done", ("a",), None
        )
        event.event = "image"
        assert repeat.filter(event)
        error = logging.LogRecord(
            "imgflow.x", logging.ERROR, __file__, 1, "boom", (), None
        )
        assert repeat.filter(error)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("amqp://guest:guest@127.0.0.1:5672//", "amqp://guest:***@127.0.0.1:5672//"),
        ("postgresql://app:s3cret@db/catalog", "postgresql://app:***@db/catalog"),
        ("dsn host=db password=s3cret user=app", "dsn host=db password=*** user=app"),
        ("token: abc123", "token: ***"),
        ("/photos/passport.jpg done", "/photos/passport.jpg done"),
    ],
)
def test_redact_masks_secrets(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_throughput_series_buckets() -> None:
    series = throughput_series([0.2, 0.4, 1.5, 2.7, 2.8, 2.9], 3.0)
    assert [p["finished"] for p in series] == [2, 3, 6]
    assert [p["images_per_second"] for p in series] == [2.0, 1.0, 3.0]
    assert series[-1]["seconds"] == 3.0


def test_throughput_series_caps_points() -> None:
    offsets = [i * 0.5 for i in range(1, 1000)]
    series = throughput_series(offsets, 500.0)
    assert len(series) <= 61
    assert series[-1]["finished"] == len(offsets)


def test_report_has_stages_and_failures(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path / "in", 3)
    out = tmp_path / "out"
    request = RunRequest(
        inputs=[str(inputs)], out_dir=out, config=CONFIG, mode="sequential"
    )
    sources, issues = collect_sources(request)
    summary = execute(request, sources, issues)
    report = summary.to_report()
    assert report["failures_by_reason"] == {
        "rejected": {"empty_file": 1, "not_an_image": 1}
    }
    stages = report["stages"]
    assert list(stages) == ["ingest", "validate", "transform", "metadata", "store"]
    assert stages["transform"]["images"] == 3
    for stage in stages.values():
        assert stage["p50"] <= stage["p95"] <= stage["p99"]
    assert report["throughput"][-1]["finished"] == 5
    finished = [image["finished_seconds"] for image in report["images"]]
    # Both sides rounded to the 4 decimals of finished_seconds; the summary's
    # seconds has only 3, so it can fall below the last result's time.
    assert all(0 <= t <= round(summary.seconds, 4) for t in finished)
    for image in report["images"]:
        if image["status"] == "done":
            assert set(image["stage_seconds"]) == set(stages)

    html_path = tmp_path / "report.html"
    write_html_report(summary, html_path)
    page = html_path.read_text()
    assert page.count("<svg") == 3
    assert "not_an_image" in page
    assert "Time per stage" in page


def test_metrics_url_printed_without_verbose(tmp_path: Path) -> None:
    """The address of a port chosen by the system is shown at default verbosity."""
    inputs = _inputs(tmp_path / "in", 1)
    result = subprocess.run(
        [sys.executable, "-m", "imgflow", "run", str(inputs), "--out", str(tmp_path / "out"),
         "--metrics-port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 1  # Two inputs are rejected.
    assert "Serving metrics at http://127.0.0.1:" in result.stdout


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--metrics-address", "::1"], "--metrics-address needs --metrics-port"),
        (
            ["--metrics-port", "0", "--metrics-address", " "],
            "--metrics-address is empty",
        ),
    ],
)
def test_metrics_address_misuse_rejected(
    tmp_path: Path, options: list[str], message: str
) -> None:
    inputs = _inputs(tmp_path / "in", 1)
    result = subprocess.run(
        [sys.executable, "-m", "imgflow", "run", str(inputs), "--out", str(tmp_path / "out"),
         *options],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr


def test_json_logs_report_usage_errors_as_json(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "imgflow", "run", str(tmp_path / "missing"), "--out",
         str(tmp_path / "out"), "--log-format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]
    assert records[-1]["event"] == "command_failed"
    assert records[-1]["level"] == "ERROR"


def test_failure_counters_start_at_zero() -> None:
    from prometheus_client import generate_latest

    text = generate_latest(RunMetrics().registry).decode()
    assert 'imgflow_retries_total{reason="io_error"} 0.0' in text
    assert 'imgflow_dead_letters_total{reason="timed_out"} 0.0' in text


def test_redact_masks_event_fields() -> None:
    """Secrets in an event's fields are masked too, not only in its message."""
    logger = logging.getLogger("imgflow.test.redact")
    logger.propagate = False
    captured: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = captured.append  # type: ignore[method-assign]
    handler.addFilter(ContextFilter())
    logger.addHandler(handler)
    try:
        logger.warning(
            "image done",
            extra={
                "source": "/in/password=hunter2.jpg",
                "inputs": ["amqp://guest:guest@127.0.0.1:5672//", "/in"],
                "images": 3,
            },
        )
    finally:
        logger.removeHandler(handler)
    record = captured[0]
    assert record.source == "/in/password=***"
    assert record.inputs == ["amqp://guest:***@127.0.0.1:5672//", "/in"]
    assert record.images == 3


def test_log_messages_escape_control_characters() -> None:
    """A file name with a terminal escape is logged as text, not obeyed."""
    record = logging.LogRecord(
        "imgflow", logging.WARNING, "", 0, "%s failed", ("in/x\x1b[2Jy.jpg",), None
    )
    assert ContextFilter().filter(record)
    assert record.getMessage() == "in/x\\x1b[2Jy.jpg failed"


def test_log_arguments_escape_newlines() -> None:
    """A newline in a file name cannot start a fake log line; the template keeps its own."""
    record = logging.LogRecord(
        "imgflow",
        logging.WARNING,
        "",
        0,
        "%s failed\nsee %s",
        ("in/a\nERROR forged.jpg", Path("in/b\nc.jpg")),
        None,
    )
    assert ContextFilter().filter(record)
    assert record.getMessage() == "in/a\\x0aERROR forged.jpg failed\nsee in/b\\x0ac.jpg"
