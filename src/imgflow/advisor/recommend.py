"""Recommend an execution model, a worker count and queue bounds.

`advise` works through named steps: volume, latency budget, dependencies
and ordering, resources, cost per image, capacity and failure handling.
Each step records a finding and the number behind it, and each reason of
the recommendation quotes one of those numbers.

The steps live in modules of their own: `planning` (the load, the machine
and the capacity plan), `decision` (the model, run options and queue
bounds), `steps` (the findings) and `formatting` (how numbers are written).
This module runs them in order and gathers their public names.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from imgflow.advisor.capacity import size_pool
from imgflow.advisor.costs import CostProfile
from imgflow.advisor.decision import (
    DEFAULT_MAX_WORKER_RSS_MB,
    DEFAULT_QUEUE_SIZE,
    ORDER_WINDOW,
    PIPELINED_MIN_IO_SHARE,
    RETRIES,
    RETRY_DELAY_SECONDS,
    TIME_LIMIT_MIN_SECONDS,
    TIME_LIMIT_P99_FACTOR,
    QueueBound,
    Recommendation,
    make_recommendation,
)
from imgflow.advisor.formatting import (
    count,
    format_bytes,
    format_percent,
    format_seconds,
)
from imgflow.advisor.planning import (
    MAX_BUDGET_SECONDS,
    MAX_BURST_FACTOR,
    MAX_WORKERS,
    AdviceRequest,
    CapacityPlan,
    Layout,
    Resources,
    arrival_pattern,
    machine_resources,
    make_plan,
)
from imgflow.advisor.steps import Step, decision_steps
from imgflow.errors import UsageError

__all__ = [
    "DEFAULT_MAX_WORKER_RSS_MB",
    "DEFAULT_QUEUE_SIZE",
    "MAX_BUDGET_SECONDS",
    "MAX_BURST_FACTOR",
    "MAX_WORKERS",
    "ORDER_WINDOW",
    "PIPELINED_MIN_IO_SHARE",
    "RETRIES",
    "RETRY_DELAY_SECONDS",
    "TIME_LIMIT_MIN_SECONDS",
    "TIME_LIMIT_P99_FACTOR",
    "Advice",
    "AdviceRequest",
    "CapacityPlan",
    "Layout",
    "QueueBound",
    "Recommendation",
    "Resources",
    "Step",
    "advise",
    "count",
    "format_bytes",
    "format_percent",
    "format_seconds",
]


@dataclass(frozen=True, slots=True)
class Advice:
    """Everything `imgflow recommend` found, computed and recommends."""

    request: AdviceRequest
    costs: CostProfile
    resources: Resources
    steps: list[Step]
    recommendation: Recommendation
    plan: CapacityPlan

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["request"]["rate"] = str(self.request.rate)
        data["request"]["rate_per_second"] = self.request.rate.per_second
        return data


def advise(request: AdviceRequest, costs: CostProfile) -> Advice:
    """Work through the decision steps and return the advice.

    Raises UsageError when the load needs more than MAX_WORKERS workers or
    when one worker does not fit in a machine's memory, and ValueError when
    the budget is not within (0, MAX_BUDGET_SECONDS].
    """
    if not 0 < request.budget_seconds <= MAX_BUDGET_SECONDS:
        raise ValueError(
            f"budget must be within (0, {MAX_BUDGET_SECONDS}] seconds, "
            f"got {request.budget_seconds}"
        )
    service = costs.service
    pattern = arrival_pattern(request)
    load = pattern.peak_rate * service.mean
    if load / request.target_utilisation > MAX_WORKERS:
        raise UsageError(
            f"--rate {request.rate.as_written} at "
            f"{format_seconds(service.mean)} per image "
            f"needs about {load / request.target_utilisation:,.0f} workers, more "
            f"than the {MAX_WORKERS:,} this planner sizes. Check the rate's unit."
        )
    resources = machine_resources(request, costs)
    if resources.workers_per_machine < 1:
        raise UsageError(_no_worker_fits(resources))
    sizing = size_pool(
        pattern.peak_rate,
        service.mean,
        service.p95,
        target_utilisation=request.target_utilisation,
        budget_seconds=request.budget_seconds,
    )
    plan = make_plan(request, costs, pattern, sizing, resources.workers_per_machine)
    recommendation = make_recommendation(request, costs, resources, plan)
    steps = decision_steps(request, costs, resources, plan, recommendation)
    return Advice(request, costs, resources, steps, recommendation, plan)


def _no_worker_fits(resources: Resources) -> str:
    peak = resources.worker_peak_bytes
    limit = resources.memory_limit_bytes
    return (
        f"One worker peaks at {format_bytes(peak)} ({peak:,} bytes), more than "
        f"the memory limit of {format_bytes(limit)} ({limit:,} bytes, from "
        f"{resources.memory_source}), so no worker fits on a machine and no run "
        f"command can work. Raise --memory-limit to at least "
        f"{math.ceil(peak / 10**6)}MB, or lower validate.max_pixels so that the "
        "largest images are rejected and profile the sample again."
    )
