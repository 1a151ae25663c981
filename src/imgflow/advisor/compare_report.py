"""A comparison as a whole: its JSON form, its table and its HTML page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from imgflow.advisor.compare_runs import Measurement, Setup
from imgflow.advisor.compare_verdicts import (
    NOISE_FRACTION,
    Row,
    Verdict,
    memory_verdict,
    speed_verdict,
)
from imgflow.advisor.formatting import count
from imgflow.advisor.profile import machine_facts
from imgflow.errors import Status
from imgflow.measure import DEFAULT_INTERVAL_SECONDS
from imgflow.reporting.html import Page

SCHEMA_VERSION = 1
INTERRUPTED_NOTE = (
    "The comparison was stopped before its last run, so some setups have "
    "fewer rounds than planned and others none."
)


@dataclass(slots=True)
class Comparison:
    """Every measurement of a comparison, grouped by setup, with verdicts."""

    rows: list[Row]
    rounds: int
    files: int
    config_sha256: str
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    # True when a stop signal ended the comparison before its last run.
    interrupted: bool = False

    @property
    def speed(self) -> Verdict:
        return speed_verdict(self.rows, self.rounds)

    @property
    def memory(self) -> Verdict:
        return memory_verdict(self.rows, self.rounds)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form written by `imgflow compare --json`."""
        return {
            "version": SCHEMA_VERSION,
            "created": self.created.replace(microsecond=0)
            .isoformat()
            .replace("+00:00", "Z"),
            "machine": machine_facts().model_dump(),
            "config_sha256": self.config_sha256,
            "files": self.files,
            "rounds": self.rounds,
            "interrupted": self.interrupted,
            "noise_fraction": NOISE_FRACTION,
            "fastest": [_setup_json(setup) for setup in self.speed.leaders],
            "least_memory": [_setup_json(setup) for setup in self.memory.leaders],
            "verdicts": [self.speed.sentence, self.memory.sentence],
            "rows": [_row_json(row) for row in self.rows],
        }


def _setup_json(setup: Setup) -> dict[str, Any]:
    return {"mode": setup.mode, "workers": setup.workers}


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _latency_json(source: Row | Measurement) -> dict[str, float | None]:
    return {
        "p50": _rounded(source.latency(0.50)),
        "p95": _rounded(source.latency(0.95)),
        "p99": _rounded(source.latency(0.99)),
    }


def _row_json(row: Row) -> dict[str, Any]:
    typical = row.typical
    return {
        "mode": row.setup.mode,
        "workers": row.setup.workers,
        "workers_used": row.workers_used,
        "images_per_second": round(row.images_per_second, 3),
        "latency_seconds": _latency_json(row),
        "peak_rss_bytes": row.peak_rss_bytes,
        "cpu_utilisation": round(row.cpu_utilisation, 3),
        "cpu_seconds": round(row.cpu_seconds, 3),
        "runs": [
            {
                "round": run.round_index + 1,
                "images": run.images,
                "counts": dict(run.counts),
                "not_processed": run.not_processed,
                "seconds": round(run.seconds, 3),
                "images_per_second": round(run.images_per_second, 3),
                "latency_seconds": _latency_json(run),
                "peak_rss_bytes": run.usage.peak_rss_bytes,
                "cpu_seconds": round(run.usage.cpu_seconds, 3),
                "cpu_utilisation": round(run.usage.cpu_utilisation, 3),
            }
            for run in row.runs
        ],
        "typical_round": typical.round_index + 1,
        "latencies_seconds": [round(value, 4) for value in typical.latencies],
        "rss_series": [[round(t, 2), rss] for t, rss in typical.usage.rss_series],
    }


def unfinished_images(measurements: Sequence[Measurement]) -> int:
    """Return the most images any run left not done (rejected, failed, not processed)."""
    worst = 0
    for run in measurements:
        not_done = run.images - run.counts.get(Status.DONE.value, 0)
        worst = max(worst, not_done + run.not_processed)
    return worst


# --- Tables and the HTML page ----------------------------------------------

TABLE_HEADERS = (
    "mode",
    "workers",
    "images/s",
    "p50 s",
    "p95 s",
    "p99 s",
    "peak RSS MB",
    "CPU use",
)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def table_rows(comparison: Comparison) -> list[list[str]]:
    """Format each row's medians as text, in the order of TABLE_HEADERS."""
    rows = []
    for row in comparison.rows:
        workers = str(row.workers_used)
        if row.workers_used != row.setup.workers:
            workers += f" (of {row.setup.workers} requested)"
        rows.append(
            [
                row.setup.mode,
                workers,
                f"{row.images_per_second:.2f}",
                _seconds(row.latency(0.50)),
                _seconds(row.latency(0.95)),
                _seconds(row.latency(0.99)),
                f"{row.peak_rss_bytes / 1e6:.0f}",
                f"{row.cpu_utilisation:.0%}",
            ]
        )
    return rows


def method_notes(rounds: int) -> list[str]:
    """Say how the numbers were measured, for the page and the terminal."""
    median = "the median over the rounds" if rounds > 1 else "one run"
    return [
        f"Every value is {median}. Each run processed the whole sample with "
        "--redo into its own scratch folder, in a fresh process.",
        "images/s: images finished (done, rejected or failed) per second, from "
        "the executor's start (worker start-up included) to the last result.",
        "p50/p95/p99 s: nearest-rank seconds per image, from the start of its "
        "first stage to the end of its last, so waits between stages count "
        "(pipelined) but the wait before the first stage does not.",
        "peak RSS: the largest sum of the resident memory of the run's process "
        f"and its workers, sampled every {DEFAULT_INTERVAL_SECONDS:g} s. Pages "
        "shared between processes count once per process, so the sum "
        "overstates physical memory.",
        "CPU use: CPU time of the run's process and its workers over the wall "
        "time of all cores.",
    ]


def html_page(comparison: Comparison) -> Page:
    """Build the comparison page: verdicts, table, and three charts as SVG."""
    from imgflow.reporting import charts

    rows = comparison.rows
    page = Page("imgflow compare")
    page.paragraph(
        f"{count(comparison.files, 'file')} under {count(len(rows), 'setup')}, "
        f"{count(comparison.rounds, 'round')}. "
        f"Created {comparison.created:%Y-%m-%d %H:%M} UTC."
    )
    if comparison.interrupted:
        page.paragraph(INTERRUPTED_NOTE, note=True)
    page.bullets([comparison.speed.sentence, comparison.memory.sentence])
    page.heading("Side by side")
    page.table(TABLE_HEADERS, table_rows(comparison))
    page.heading("Throughput")
    page.figure(
        charts.bar_chart(
            [row.setup.chart_label for row in rows],
            [row.images_per_second for row in rows],
            title="Throughput per setup",
            ylabel="images/s",
        ),
        "Images finished per second. Higher is better.",
    )
    page.heading("Latency per image")
    page.figure(
        charts.distribution_chart(
            {row.setup.chart_label: row.typical.latencies for row in rows},
            title="Seconds per image",
            ylabel="seconds",
        ),
        "Boxes span the quartiles and whiskers the 5th to 95th percentile. "
        "Every image is a point. Each setup shows its run of median throughput.",
    )
    page.heading("Memory over time")
    page.figure(
        charts.line_chart(
            {
                row.setup.label: (
                    [t for t, _ in row.typical.usage.rss_series],
                    [rss / 1e6 for _, rss in row.typical.usage.rss_series],
                )
                for row in rows
            },
            title="Resident memory of the process tree",
            xlabel="seconds since the run started",
            ylabel="MB",
        ),
        "Summed RSS of the run's process and its workers, sampled every "
        f"{DEFAULT_INTERVAL_SECONDS:g} s.",
    )
    page.heading("How this was measured")
    page.bullets(method_notes(comparison.rounds))
    return page
