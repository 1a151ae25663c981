"""`imgflow recommend`: an execution model and a capacity plan for a load."""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import click
from rich.panel import Panel
from rich.table import Table

from imgflow.advisor import report
from imgflow.advisor.costs import ESTIMATE, read_profile
from imgflow.advisor.planning import MAX_BUDGET_SECONDS
from imgflow.advisor.rates import Rate, parse_rate
from imgflow.advisor.recommend import Advice, AdviceRequest, advise
from imgflow.cli.app import stderr, stdout
from imgflow.errors import ExitCode, UsageError
from imgflow.outdir import check_output_file

_BYTES = re.compile(r"^\s*([0-9]+(\.[0-9]+)?)\s*([kmgt]i?b?|b)?\s*$")
_BYTE_UNITS = {
    None: 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "ki": 2**10,
    "kib": 2**10,
    "mi": 2**20,
    "mib": 2**20,
    "gi": 2**30,
    "gib": 2**30,
    "ti": 2**40,
    "tib": 2**40,
}


def _rate_option(ctx: click.Context, param: click.Parameter, value: str) -> Rate:
    try:
        return parse_rate(value)
    except UsageError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _finite(text: str) -> float | None:
    """Return `text` as a finite float, or None when it is not one."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _budget_option(ctx: click.Context, param: click.Parameter, value: str) -> float:
    seconds = _finite(value)
    if seconds is None or not 0 < seconds <= MAX_BUDGET_SECONDS:
        raise click.BadParameter(
            f"invalid latency budget {value!r}: expected a number of seconds "
            f"greater than 0 and at most {MAX_BUDGET_SECONDS:,} (365 days)",
            ctx,
            param,
        )
    return seconds


def _utilisation_option(
    ctx: click.Context, param: click.Parameter, value: str
) -> float:
    share = _finite(value)
    if share is None or not 0 < share < 1:
        raise click.BadParameter(
            f"invalid utilisation {value!r}: expected a share greater than 0 "
            "and less than 1, such as 0.8",
            ctx,
            param,
        )
    return share


def _bytes_option(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> int | None:
    if value is None:
        return None
    match = _BYTES.match(value.lower())
    if match is None:
        raise click.BadParameter(
            f"invalid size {value!r}: expected bytes, optionally with a unit "
            "(800MB, 2GB, 4GiB)",
            ctx,
            param,
        )
    number = _finite(match[1])
    if number is None:
        raise click.BadParameter(
            f"invalid size {value!r}: the number is too large", ctx, param
        )
    size = int(number * _BYTE_UNITS[match[3]])
    if size <= 0:
        raise click.BadParameter(
            f"invalid size {value!r}: expected more than 0 bytes", ctx, param
        )
    return size


@click.command()
@click.option(
    "--profile",
    "profile_path",
    type=click.Path(path_type=Path),
    help="Profile of your images from `imgflow profile SAMPLE --json FILE` "
    "[default: a built-in estimate for 12 MP JPEG photos].",
)
@click.option(
    "--rate",
    required=True,
    callback=_rate_option,
    metavar="COUNT/UNIT",
    help="Arrival rate with UNIT s, min, hour or day, such as 10000/min. A rate "
    "per day is a daily total. Any other rate is the rate at the busiest time.",
)
@click.option(
    "--latency-budget",
    "budget_seconds",
    required=True,
    callback=_budget_option,
    metavar="SECONDS",
    help="Time from arrival to finished image that 95% of images must meet.",
)
@click.option(
    "--ordered", is_flag=True, help="Results must be recorded in input order."
)
@click.option(
    "--memory-limit",
    "memory_limit",
    callback=_bytes_option,
    metavar="BYTES",
    help="Memory imgflow may use on one machine, in bytes or with a unit (2GB, "
    "4GiB) [default: the profiled machine's, or this machine's].",
)
@click.option(
    "--cores",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Cores of one machine [default: the profiled machine's, or this machine's].",
)
@click.option(
    "--utilisation",
    "target_utilisation",
    callback=_utilisation_option,
    default="0.8",
    show_default=True,
    metavar="SHARE",
    help="Target share of time each worker is busy at the planning rate.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of the simulated day. The same seed simulates the same day.",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(path_type=Path),
    help="Write the advice as an HTML page with the backlog chart to this file.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path),
    help="Write the whole advice as JSON to this file, for scripts.",
)
def recommend(
    profile_path: Path | None,
    rate: Rate,
    budget_seconds: float,
    ordered: bool,
    memory_limit: int | None,
    cores: int | None,
    target_utilisation: float,
    seed: int,
    html_path: Path | None,
    json_path: Path | None,
) -> None:
    """Recommend an execution model, workers and queue bounds for a load.

    Each decision step shows its finding and the number behind it. The
    capacity plan sizes the worker pool with M/M/c queueing and simulates a
    day of bursty arrivals to show the backlog.
    """
    request = AdviceRequest(
        rate=rate,
        budget_seconds=budget_seconds,
        ordered=ordered,
        memory_limit_bytes=memory_limit,
        cores=cores,
        target_utilisation=target_utilisation,
        seed=seed,
    )
    try:
        for option, path in (("--json", json_path), ("--html", html_path)):
            if path is not None:
                check_output_file(path, option)
        costs = read_profile(profile_path) if profile_path is not None else ESTIMATE
        advice = advise(request, costs)
    except UsageError as exc:
        stderr.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(ExitCode.USAGE)
    print_advice(advice)
    try:
        if json_path is not None:
            report.write_json(advice, json_path)
            stdout.print(f"Wrote {json_path}", highlight=False)
        if html_path is not None:
            report.write_html(advice, html_path)
            stdout.print(f"Wrote {html_path}", highlight=False)
    except UsageError as exc:
        stderr.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(ExitCode.USAGE)


def print_advice(advice: Advice) -> None:
    """Print the steps, the recommendation and the capacity plan."""
    if advice.costs.estimated:
        stdout.print(
            Panel(report.ESTIMATE_NOTE, title="estimate", border_style="yellow")
        )
    steps = Table(title="Decision steps", title_justify="left", show_lines=True)
    steps.add_column("step", no_wrap=True)
    steps.add_column("number", style="bold")
    steps.add_column("finding", overflow="fold")
    for step in advice.steps:
        steps.add_row(step.name, step.number, step.finding)
    stdout.print(steps)

    rec = advice.recommendation
    lines = [f"[bold]{report.headline(advice)}[/bold]", "", rec.command, ""]
    lines += [f"- {reason}" for reason in rec.reasons]
    lines += [f"[yellow]! {warning}[/yellow]" for warning in rec.warnings]
    stdout.print(
        Panel("\n".join(lines), title="Recommendation", border_style="green"),
        highlight=False,
    )

    bounds = Table(title="Queue bounds", title_justify="left")
    for column in ("queue", "bound", "reason"):
        bounds.add_column(column, overflow="fold")
    for bound in rec.queue_bounds:
        bounds.add_row(bound.name, f"{bound.value:,}", bound.reason)
    stdout.print(bounds)

    plan = Table(title="Capacity plan", title_justify="left")
    plan.add_column("figure")
    plan.add_column("value", overflow="fold")
    for figure, value in report.plan_rows(advice):
        plan.add_row(figure, value)
    stdout.print(plan)
    stdout.print(
        f"Simulated day: {report.pattern_text(advice.plan.pattern)} "
        f"Simulated {report.method_text(advice.plan.day, advice.costs.service)}.",
        highlight=False,
    )
