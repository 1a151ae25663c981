"""Advice as table rows, an HTML page with charts, and JSON for scripts."""

from __future__ import annotations

import json
from pathlib import Path

from imgflow.advisor.capacity import BUDGET_QUANTILE
from imgflow.advisor.formatting import count, format_percent, format_seconds
from imgflow.advisor.rates import format_rate
from imgflow.advisor.recommend import Advice
from imgflow.advisor.simulate import (
    FLUID_STEP_SECONDS,
    MAX_EVENT_ARRIVALS,
    SERIES_STEP_SECONDS,
    ArrivalPattern,
    DayResult,
    ServiceTimes,
)
from imgflow.outdir import write_output_file
from imgflow.reporting import charts
from imgflow.reporting.html import Page

ESTIMATE_NOTE = (
    "These costs are a built-in estimate for 12 MP JPEG photos, not measurements "
    "of your images. Measure a sample with `imgflow profile SAMPLE --json FILE` "
    "and run `imgflow recommend --profile FILE` again."
)


def headline(advice: Advice) -> str:
    """Summarise the recommendation in one line."""
    rec = advice.recommendation
    mode = f"{rec.mode} (planned)" if rec.planned else rec.mode
    text = f"{mode}, {count(rec.workers, 'worker')}"
    if rec.mode == "distributed":
        text += f" on {count(rec.machines, 'machine')} of {rec.workers_per_machine}"
    if rec.burst_machines is not None and rec.burst_workers is not None:
        text += (
            f", growing to {count(rec.burst_machines, 'machine')} "
            f"({count(rec.burst_workers, 'worker')}) for bursts"
        )
    if rec.ordered:
        text += ", order kept"
    return text


def pattern_text(pattern: ArrivalPattern) -> str:
    """Describe the simulated day's arrival pattern in one sentence."""
    return (
        f"Poisson arrivals on a diurnal cycle from {pattern.night_share:.0%} of "
        f"the peak rate at night to {format_rate(pattern.peak_rate)} at "
        f"{pattern.peak_hour:g}:00, plus on average {pattern.bursts_per_day:g} "
        f"bursts a day at Poisson times, each adding "
        f"{pattern.burst_extra:.0%} of the peak rate for "
        f"{format_seconds(pattern.burst_seconds)}."
    )


def method_text(day: DayResult, service: ServiceTimes) -> str:
    """Describe how the day was simulated."""
    if day.method == "event" and service.p50 == service.p95 == service.max:
        return f"image by image, each taking {format_seconds(service.mean)}"
    if day.method == "event":
        return (
            "image by image, with service times drawn from a lognormal fitted to "
            "the measured p50 and p95"
        )
    return (
        f"as a fluid queue in steps of {FLUID_STEP_SECONDS:g} s, because the day "
        "has more than "
        f"{MAX_EVENT_ARRIVALS:,} images"
    )


def plan_rows(advice: Advice) -> list[tuple[str, str]]:
    """Return the capacity plan as (figure, value) rows for a table."""
    plan = advice.plan
    sizing = plan.sizing
    estimate = sizing.estimate
    rows = [
        (
            "service time per image",
            f"{format_seconds(plan.service_seconds)} mean, "
            f"{format_seconds(plan.service_p95_seconds)} p95",
        ),
        ("planning rate (busiest time)", format_rate(plan.planning_rate)),
        ("offered load (λS)", f"{plan.offered_load:.3g} busy workers"),
        (
            f"workers at {plan.target_utilisation:.0%} target utilisation",
            f"{sizing.workers} (set by {sizing.bound_by})",
        ),
        ("utilisation", format_percent(estimate.utilisation)),
        ("P(wait) (Erlang C, M/M/c)", format_percent(estimate.wait_probability)),
        ("Wq, mean wait (M/M/c)", format_seconds(estimate.mean_wait_seconds)),
        ("mean response time (M/M/c)", format_seconds(estimate.mean_response_seconds)),
        (
            f"p{BUDGET_QUANTILE * 100:.0f} response time",
            f"{format_seconds(sizing.latency_seconds)} ({plan.latency_method})",
        ),
        ("latency budget", format_seconds(plan.budget_seconds)),
        ("max waiting images within budget", f"{plan.max_waiting_images:,}"),
        ("simulated day", f"{count(plan.day.arrivals, 'image')}, seed {plan.seed}"),
    ]
    rows += _day_rows(f"with {count(plan.day.workers, 'worker')}", plan.day)
    if plan.burst_day is not None:
        rows += _day_rows(
            f"with {count(plan.burst_day.workers, 'worker')} (bursts)", plan.burst_day
        )
    if plan.one_machine_day is not None:
        rows += _day_rows(
            f"on one machine alone ({count(plan.one_machine_day.workers, 'worker')})",
            plan.one_machine_day,
        )
    return rows


def _day_rows(label: str, day: DayResult) -> list[tuple[str, str]]:
    waits = (
        f"{format_seconds(day.worst_wait_seconds)} "
        f"(p99 {format_seconds(day.p99_wait_seconds)})"
    )
    if day.worst_wait_past_day:
        waits += ", projected: the time to clear the backlog after midnight"
    rows = [
        (f"worst backlog {label}", count(day.worst_backlog, "image")),
        (f"worst wait {label}", waits),
    ]
    if day.end_backlog:
        rows.append(
            (
                f"backlog at midnight {label}",
                f"{count(day.end_backlog, 'image')}, growing",
            )
        )
    return rows


def write_json(advice: Advice, path: Path) -> None:
    """Write the whole advice as JSON, atomically.

    Raises UsageError naming --json when the file cannot be written.
    """
    data = advice.to_dict()
    data["headline"] = headline(advice)
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    write_output_file(path, text.encode(), "--json")


def write_html(advice: Advice, path: Path) -> None:
    """Write the advice as an HTML page with the simulated day's charts.

    Draws two or three charts with matplotlib, about a second in all.
    Raises UsageError naming --html when the file cannot be written.
    """
    page = Page(f"imgflow recommend: {headline(advice)}")
    request = advice.request
    page.paragraph(
        f"Rate {request.rate}, latency budget {format_seconds(request.budget_seconds)}"
        f"{', ordered' if request.ordered else ''}; costs from {advice.costs.source}."
    )
    if advice.costs.estimated:
        page.paragraph(ESTIMATE_NOTE, note=True)
    page.heading("Decision steps")
    page.table(
        ["step", "number", "finding"],
        [(step.name, step.number, step.finding) for step in advice.steps],
    )
    _recommendation_section(page, advice)
    page.heading("Capacity plan")
    page.table(["figure", "value"], plan_rows(advice))
    _charts(page, advice)
    page.write(path, "--html")


def _recommendation_section(page: Page, advice: Advice) -> None:
    rec = advice.recommendation
    page.heading("Recommendation")
    page.paragraph(headline(advice))
    page.paragraph(rec.command)
    page.bullets(rec.reasons)
    if rec.warnings:
        page.bullets(f"Warning: {warning}" for warning in rec.warnings)
    page.table(
        ["queue", "bound", "reason"],
        [(bound.name, bound.value, bound.reason) for bound in rec.queue_bounds],
    )


def _charts(page: Page, advice: Advice) -> None:
    plan = advice.plan
    budget = format_seconds(plan.budget_seconds)
    days = [plan.day] + ([plan.burst_day] if plan.burst_day else [])
    hours = [
        i * SERIES_STEP_SECONDS / 3600 for i in range(len(plan.day.backlog_series))
    ]
    backlog = {
        count(day.workers, "worker"): (hours, day.backlog_series) for day in days
    }
    page.figure(
        charts.line_chart(
            backlog,
            title="Images waiting for a worker (max per minute)",
            xlabel="hour of the simulated day",
            ylabel="images waiting",
            hline=(
                float(plan.max_waiting_images),
                f"backlog that uses up the {budget} budget",
            ),
        ),
        f"{pattern_text(plan.pattern)} Simulated "
        f"{method_text(plan.day, advice.costs.service)}.",
    )
    response = {
        count(day.workers, "worker"): (
            hours,
            [wait + plan.service_p95_seconds for wait in day.wait_series],
        )
        for day in days
    }
    page.figure(
        charts.line_chart(
            response,
            title="Worst response time per minute (wait plus p95 service time)",
            xlabel="hour of the simulated day",
            ylabel="seconds",
            hline=(
                plan.budget_seconds,
                f"latency budget {budget}",
            ),
        ),
        "Minutes above the dashed line break the latency budget.",
    )
    alone = plan.one_machine_day
    if alone is not None:
        page.figure(
            charts.line_chart(
                {count(alone.workers, "worker"): (hours, alone.backlog_series)},
                title="Images waiting on one machine alone",
                xlabel="hour of the simulated day",
                ylabel="images waiting",
            ),
            f"One machine runs {count(alone.workers, 'worker')}. The same day's "
            f"backlog reaches {count(alone.worst_backlog, 'image')}, and the worst "
            f"wait is {format_seconds(alone.worst_wait_seconds)}"
            + (
                ", the projected time to clear the backlog after midnight."
                if alone.worst_wait_past_day
                else "."
            ),
        )
