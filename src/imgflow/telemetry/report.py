"""The parts of a run report that describe the run over time and by stage.

`RunSummary.to_report` adds these to the JSON report, and `html_page`
renders a summary with charts of them as one self-contained HTML page.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from imgflow.errors import Status
from imgflow.records import ImageResult
from imgflow.stats import percentiles

if TYPE_CHECKING:
    from imgflow.reporting.html import Page
    from imgflow.runner import RunSummary

# Pipeline stages in the order an image passes through them.
STAGES = ("ingest", "validate", "transform", "metadata", "store")
# At most this many points in the throughput series, whatever the run length.
MAX_THROUGHPUT_POINTS = 60


def throughput_series(
    finish_offsets: Sequence[float], seconds: float
) -> list[dict[str, float]]:
    """Bucket result times into at most 60 intervals of whole seconds.

    Each point gives the end of its interval (seconds since the run
    started), the results finished by then, and the rate within it.
    """
    if not finish_offsets or seconds <= 0:
        return []
    width = max(1.0, math.ceil(seconds / MAX_THROUGHPUT_POINTS))
    intervals = max(1, math.ceil(seconds / width))
    buckets = Counter(min(int(t // width), intervals - 1) for t in finish_offsets)
    series = []
    finished = 0
    for index in range(intervals):
        count = buckets.get(index, 0)
        finished += count
        end = min((index + 1) * width, seconds)
        span = end - index * width
        series.append(
            {
                "seconds": round(end, 3),
                "finished": finished,
                "images_per_second": round(count / span, 3) if span > 0 else 0.0,
            }
        )
    return series


def stage_latency(results: Sequence[ImageResult]) -> dict[str, dict[str, float | None]]:
    """Return p50, p95, p99, mean and total seconds per stage."""
    latency: dict[str, dict[str, float | None]] = {}
    for stage in STAGES:
        times = [r.timings[stage] for r in results if stage in r.timings]
        if not times:
            continue
        summary: dict[str, float | None] = {
            key: _round(value) for key, value in percentiles(times).items()
        }
        summary["mean"] = _round(sum(times) / len(times))
        summary["total"] = _round(sum(times))
        summary["images"] = len(times)
        latency[stage] = summary
    return latency


def failures_by_reason(results: Sequence[ImageResult]) -> dict[str, dict[str, int]]:
    """Count rejected and failed images per status and reason."""
    counts: dict[str, dict[str, int]] = {}
    for result in results:
        if result.status is Status.DONE:
            continue
        reason = result.reason.value if result.reason else "unknown"
        by_reason = counts.setdefault(result.status.value, {})
        by_reason[reason] = by_reason.get(reason, 0) + 1
    return {status: dict(sorted(c.items())) for status, c in sorted(counts.items())}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def html_page(summary: RunSummary, report: dict[str, Any]) -> Page:
    """Render the run report as a page with a table and charts."""
    from imgflow.reporting import charts
    from imgflow.reporting.html import Page

    head = report["summary"]
    page = Page("imgflow run report")
    page.paragraph(
        f"Mode {head['mode']} with {head['workers']} workers, "
        f"{head['images']} images in {head['seconds']} s "
        f"({head['images_per_second']} images/s)."
    )
    if head.get("mode_reason"):
        page.paragraph(f"The mode was chosen because {head['mode_reason']}.", note=True)
    if head.get("catalog_error"):
        page.paragraph(
            f"{head['catalog_error']}. Images finished afterwards, which the "
            f"catalog lacks and the next run processes again: {head['not_recorded']}.",
            note=True,
        )
    page.table(
        [
            "done",
            "rejected",
            "failed",
            "not processed",
            "skipped",
            "p50 s",
            "p95 s",
            "p99 s",
        ],
        [
            [
                head["done"],
                head["rejected"],
                head["failed"],
                head["not_processed"],
                head["skipped"],
                head["p50_seconds"],
                head["p95_seconds"],
                head["p99_seconds"],
            ]
        ],
    )
    series = report["throughput"]
    if series:
        page.heading("Throughput over time")
        page.figure(
            charts.line_chart(
                {
                    "images/s": (
                        [p["seconds"] for p in series],
                        [p["images_per_second"] for p in series],
                    )
                },
                title="Images finished per second",
                xlabel="seconds since the run started",
                ylabel="images/s",
                step=True,
            ),
            "Rate of finished images in each interval of the run.",
        )
    stages = report["stages"]
    if stages:
        page.heading("Time per stage")
        page.table(
            ["stage", "images", "p50 s", "p95 s", "p99 s", "mean s", "total s"],
            [
                [name, s["images"], s["p50"], s["p95"], s["p99"], s["mean"], s["total"]]
                for name, s in stages.items()
            ],
        )
        page.figure(
            charts.distribution_chart(
                {
                    stage: [
                        r.timings[stage] for r in summary.results if stage in r.timings
                    ]
                    for stage in stages
                },
                title="Seconds per image in each stage",
                ylabel="seconds",
            ),
            "Boxes span the quartiles; whiskers reach the 5th and 95th percentiles.",
        )
    failures = report["failures_by_reason"]
    if failures:
        page.heading("Rejections and failures by reason")
        rows = [
            [f"{status}: {reason}", count]
            for status, reasons in failures.items()
            for reason, count in reasons.items()
        ]
        page.table(["status: reason", "images"], rows)
        page.figure(
            charts.bar_chart(
                [row[0] for row in rows],
                [row[1] for row in rows],
                title="Images not done, by reason",
                ylabel="images",
                annotate="{:.0f}",
            ),
            "Every rejected or failed image has exactly one reason.",
        )
    problems = [r for r in summary.results if r.status is not Status.DONE]
    if problems:
        page.heading("Images not done")
        page.table(
            ["source", "status", "stage", "reason", "message"],
            [
                [
                    r.source.text,
                    r.status.value,
                    r.stage,
                    r.reason.value if r.reason else None,
                    r.message,
                ]
                for r in problems
            ],
        )
    return page
