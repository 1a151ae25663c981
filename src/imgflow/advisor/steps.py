"""The decision steps: what each found and the number behind it."""

from __future__ import annotations

from dataclasses import dataclass

from imgflow.advisor.costs import CostProfile
from imgflow.advisor.decision import (
    ORDER_WINDOW,
    RETRIES,
    RETRY_DELAY_SECONDS,
    TIME_LIMIT_MIN_SECONDS,
    TIME_LIMIT_P99_FACTOR,
    Recommendation,
    time_limit,
)
from imgflow.advisor.formatting import (
    count,
    format_bytes,
    format_percent,
    format_seconds,
)
from imgflow.advisor.planning import AdviceRequest, CapacityPlan, Resources
from imgflow.advisor.rates import format_rate


@dataclass(frozen=True, slots=True)
class Step:
    """One step of the decision: what was found and the number behind it."""

    name: str
    finding: str
    number: str


def decision_steps(
    request: AdviceRequest,
    costs: CostProfile,
    resources: Resources,
    plan: CapacityPlan,
    recommendation: Recommendation,
) -> list[Step]:
    """Return every step of the decision, in the order they are taken."""
    return [
        _volume_step(request, plan),
        _budget_step(request, costs),
        _ordering_step(request, recommendation),
        _resources_step(resources),
        _cost_step(costs),
        _capacity_step(plan),
        _failure_step(costs, recommendation),
    ]


def _volume_step(request: AdviceRequest, plan: CapacityPlan) -> Step:
    peak = format_rate(plan.planning_rate)
    if request.rate.is_daily_total:
        factor = 1 / plan.pattern.mean_share
        finding = (
            f"{request.rate} is a daily total. The simulated day peaks at "
            f"{factor:.3g} times its mean rate, so the busiest hour is planned "
            f"at {peak}."
        )
    else:
        finding = (
            f"{request.rate} is planned as the rate at the busiest time. A day "
            f"shaped like the simulated one brings about "
            f"{count(round(plan.daily_images), 'image')}."
        )
    return Step("volume", finding, f"{peak} at peak")


def _budget_step(request: AdviceRequest, costs: CostProfile) -> Step:
    budget = request.budget_seconds
    p95 = costs.service.p95
    if p95 > budget:
        return Step(
            "latency budget",
            f"The p95 service time, {format_seconds(p95)}, is over the "
            f"{format_seconds(budget)} budget, so no number of workers meets it.",
            f"{p95 / budget:.0%} of budget",
        )
    return Step(
        "latency budget",
        f"The p95 service time, {format_seconds(p95)}, uses "
        f"{format_percent(p95 / budget)} of the {format_seconds(budget)} budget, "
        f"so an image may wait up to {format_seconds(budget - p95)} for a worker.",
        f"{format_seconds(budget - p95)} of wait allowed",
    )


def _ordering_step(request: AdviceRequest, recommendation: Recommendation) -> Step:
    independent = (
        "Each image goes through its stages on its own and no image needs "
        "another's result, so images can run on many workers at once."
    )
    if not request.ordered:
        return Step(
            "dependencies and ordering",
            f"{independent} No order was requested, so results are recorded as "
            "they finish.",
            "no order",
        )
    machines = recommendation.burst_machines or recommendation.machines
    if machines == 1 and recommendation.workers == 1:
        return Step(
            "dependencies and ordering",
            f"{independent} Order was requested, and one worker takes images in "
            "input order, so it holds with no reorder buffer.",
            "strict order",
        )
    if machines == 1:
        return Step(
            "dependencies and ordering",
            f"{independent} Order was requested: results wait in a reorder buffer, "
            f"with at most {ORDER_WINDOW} images running ahead of the oldest "
            "unfinished one.",
            f"window of {ORDER_WINDOW}",
        )
    return Step(
        "dependencies and ordering",
        f"{independent} Order was requested, but order holds only within one run, "
        f"and the work needs {count(machines, 'machine')}.",
        "order per machine",
    )


def _resources_step(resources: Resources) -> Step:
    finding = (
        f"A machine has {count(resources.cores, 'core')} "
        f"({resources.cores_source}) and "
        f"{format_bytes(resources.memory_limit_bytes)} of memory "
        f"({resources.memory_source}). One worker peaks at "
        f"{format_bytes(resources.worker_peak_bytes)}, so memory allows "
        f"{count(resources.workers_by_memory, 'worker')} and the cores "
        f"{resources.cores}."
    )
    return Step(
        "resources",
        finding,
        f"{count(resources.workers_per_machine, 'worker')} per machine",
    )


def _cost_step(costs: CostProfile) -> Step:
    service = costs.service
    if costs.estimated:
        finding = (
            "No profile was given, so this uses a built-in estimate for 12 MP JPEG "
            f"photos: {format_seconds(service.mean)} per image and "
            f"{format_bytes(costs.peak_rss_bytes)} peak memory per worker. Measure "
            "your own images with `imgflow profile SAMPLE --json FILE`."
        )
    else:
        finding = (
            f"A worker spends {format_seconds(service.mean)} per image on average "
            f"(p95 {format_seconds(service.p95)}, max {format_seconds(service.max)}), "
            f"measured on {count(costs.images_timed or 0, 'image')} in "
            f"{costs.source}."
        )
        if costs.megapixels_p50 is not None and costs.megapixels_max is not None:
            finding += (
                f" Images are {costs.megapixels_p50:.3g} MP at the median and up to "
                f"{costs.megapixels_max:.3g} MP."
            )
    return Step("cost per image", finding, f"{format_seconds(service.mean)} per image")


def _capacity_step(plan: CapacityPlan) -> Step:
    sizing = plan.sizing
    finding = (
        f"The offered load is {plan.offered_load:.3g} busy workers "
        f"({format_rate(plan.planning_rate)} x "
        f"{format_seconds(plan.service_seconds)}). At "
        f"{plan.target_utilisation:.0%} utilisation that needs "
        f"{count(sizing.workers, 'worker')}, and M/M/c puts the p95 response time at "
        f"{format_seconds(sizing.latency_seconds)}."
    )
    if sizing.bound_by == "latency":
        finding += " The latency budget, not the utilisation, sets the count."
    layout = plan.layout
    if layout.machines > 1:
        finding += (
            f" One machine runs {count(layout.workers_per_machine, 'worker')}, so "
            f"one machine is not enough: {layout.machines} machines are needed."
        )
    elif layout.max_machines > 1:
        finding += (
            f" One machine runs {count(layout.workers_per_machine, 'worker')}, "
            "which carries the planning rate but not the bursts: "
            f"{layout.max_machines} machines are needed while they last."
        )
    elif layout.workers > sizing.workers:
        finding += (
            f" Bursts need {count(layout.workers, 'worker')}, which still fit "
            "on one machine."
        )
    number = count(layout.workers, "worker")
    if layout.workers != sizing.workers:
        number += f" ({sizing.workers} by M/M/c)"
    return Step("capacity", number=number, finding=finding)


def _failure_step(costs: CostProfile, recommendation: Recommendation) -> Step:
    retry = (
        f"A failure that may pass (I/O error, lost worker, time limit) is retried "
        f"{RETRIES} times with exponential backoff from "
        f"{format_seconds(RETRY_DELAY_SECONDS)}, then the image is parked in the "
        "dead-letter queue (`imgflow dlq list`)."
    )
    if recommendation.mode == "sequential":
        return Step(
            "failure handling",
            f"{retry} Sequential mode cannot enforce --time-limit, because a decode "
            "stuck in C code cannot be interrupted within the process. A stuck "
            "image holds up the ones behind it; the p99 service time is "
            f"{format_seconds(costs.p99_seconds)}.",
            f"{RETRIES} retries",
        )
    limit = time_limit(costs)
    source = "estimated" if costs.estimated else "measured"
    return Step(
        "failure handling",
        f"{retry} With --time-limit {limit} s ({TIME_LIMIT_P99_FACTOR} times the p99 "
        f"service time or twice the longest {source} image, and at least "
        f"{TIME_LIMIT_MIN_SECONDS} s), a stuck image costs "
        f"at most {(RETRIES + 1) * limit} s of worker time.",
        f"--time-limit {limit} s",
    )
