"""The execution model, the run options and the queue bounds to recommend."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from imgflow.advisor.costs import CostProfile
from imgflow.advisor.formatting import (
    count,
    format_bytes,
    format_percent,
    format_seconds,
)
from imgflow.advisor.planning import (
    MAX_BURST_FACTOR,
    AdviceRequest,
    CapacityPlan,
    Layout,
    Resources,
)
from imgflow.executors.routing import DEFAULT_SMALL_PIXELS
from imgflow.runner import RunRequest

_RUN_DEFAULTS: dict[str, Any] = {
    field.name: field.default for field in dataclasses.fields(RunRequest)
}
ORDER_WINDOW: int = _RUN_DEFAULTS["order_window"]
DEFAULT_QUEUE_SIZE: int = _RUN_DEFAULTS["queue_size"]
RETRIES: int = _RUN_DEFAULTS["retries"]
RETRY_DELAY_SECONDS: float = _RUN_DEFAULTS["retry_delay"]
DEFAULT_MAX_WORKER_RSS_MB: int = _RUN_DEFAULTS["max_worker_rss_mb"]

# Share of the time per image spent reading and writing files above which
# the pipelined model, which overlaps that I/O with rendering, is chosen.
PIPELINED_MIN_IO_SHARE = 0.3
# A time limit of this many times the p99 service time (or twice the
# longest measured image, whichever is longer) ends only images far off
# the measured range. It is never below TIME_LIMIT_MIN_SECONDS, so a
# sample without slow images does not get a limit that ends healthy ones.
TIME_LIMIT_P99_FACTOR = 3
TIME_LIMIT_MIN_SECONDS = 10


@dataclass(frozen=True, slots=True)
class QueueBound:
    """A bound on one queue, with the reason for its value."""

    name: str
    value: int
    reason: str


@dataclass(frozen=True, slots=True)
class Recommendation:
    """The model to run, how many workers on how many machines, and why."""

    mode: str
    planned: bool  # the mode is not built yet
    workers: int
    workers_per_machine: int
    machines: int
    burst_workers: int | None
    burst_machines: int | None
    ordered: bool
    options: list[str]
    command: str
    queue_bounds: list[QueueBound]
    reasons: list[str]
    warnings: list[str]


def choose_mode(costs: CostProfile, plan: CapacityPlan) -> tuple[str, str]:
    """Return the mode and the reason for it, quoting the deciding number.

    The mode must run every worker of `plan.layout`, bursts included:
    sequential runs one, the other local modes one machine's pool, and only
    distributed spreads over several machines.
    """
    layout = plan.layout
    workers = layout.workers
    estimate = plan.sizing.estimate
    if layout.max_machines == 1 and workers == 1:
        return "sequential", (
            f"One worker carries the load: {estimate.offered_load:.3g} busy workers "
            f"on average, {format_percent(estimate.utilisation)} utilisation. "
            "Worker processes would only add their start-up: a few milliseconds "
            "each where they are forked (Linux), about 0.3 s where each starts a "
            "fresh interpreter."
        )
    if layout.max_machines > 1:
        planned = (
            "The distributed model (Celery with RabbitMQ) is planned. Until it "
            "lands, run parallel mode with "
            f"{count(layout.workers_per_machine, 'worker')} on each machine, each "
            "over its own share of the inputs."
        )
        if layout.machines > 1:
            return "distributed", (
                f"{count(plan.sizing.workers, 'worker')} are needed and one "
                f"machine runs {layout.workers_per_machine}, so the work spreads "
                f"over {count(layout.machines, 'machine')} fed by one shared "
                f"queue. {planned}"
            )
        return "distributed", (
            f"One machine of {count(layout.workers_per_machine, 'worker')} carries "
            "the planning rate, but bursts need "
            f"{count(plan.burst_workers or 0, 'worker')}, so "
            f"the pool must grow to {count(layout.max_machines, 'machine')} fed by "
            f"one shared queue. {planned}"
        )
    small = DEFAULT_SMALL_PIXELS / 1e6
    if costs.megapixels_p50 is not None and costs.megapixels_p50 <= small:
        return "hybrid", (
            f"Half the images are at most {costs.megapixels_p50:.2g} MP, within "
            f"the {small:g} MP that hybrid batches and keeps a worker for, so "
            "they do not wait behind the large ones."
        )
    if costs.io_share is not None and costs.io_share >= PIPELINED_MIN_IO_SHARE:
        return "pipelined", (
            f"Reading and writing files take {costs.io_share:.0%} of the time per "
            "image, and pipelined mode overlaps that I/O with rendering."
        )
    return "parallel", (
        f"{count(workers, 'worker')} fit on one machine, and whole images on a "
        "process pool use every core."
    )


def make_recommendation(
    request: AdviceRequest,
    costs: CostProfile,
    resources: Resources,
    plan: CapacityPlan,
) -> Recommendation:
    """Choose the mode and the run command for the plan's layout, with reasons.

    The command runs on every machine of the layout.
    """
    layout = plan.layout
    per_machine = layout.workers_per_machine
    mode, mode_reason = choose_mode(costs, plan)
    reasons = [mode_reason, *_ordering_reasons(request, layout)]
    reasons.append(_memory_reason(mode, resources, per_machine))
    if plan.burst_workers is not None:
        reasons.append(_burst_reason(plan))

    options = _run_options(request, costs, resources, mode, per_machine)
    return Recommendation(
        mode=mode,
        planned=mode == "distributed",
        workers=layout.workers,
        workers_per_machine=per_machine,
        machines=layout.machines,
        burst_workers=layout.burst_workers,
        burst_machines=layout.burst_machines,
        ordered=request.ordered,
        options=options,
        command=_command(mode, options),
        queue_bounds=_queue_bounds(mode, plan, request.ordered),
        reasons=reasons,
        warnings=_warnings(request, costs, plan),
    )


def _burst_reason(plan: CapacityPlan) -> str:
    """Say how the layout covers the workers that the bursts need."""
    layout = plan.layout
    assert plan.burst_workers is not None
    found = (
        f"Bursts in the simulated day push the worst wait to "
        f"{format_seconds(plan.day.worst_wait_seconds)} with "
        f"{count(plan.sizing.workers, 'worker')}. "
        f"{count(plan.burst_workers, 'worker')} keep it within the budget"
    )
    if layout.burst_machines is not None:
        return (
            f"{found}, so add machines while the queue is long, up to "
            f"{count(layout.burst_machines, 'machine')} "
            f"({count(layout.burst_workers or 0, 'worker')})."
        )
    if layout.machines > 1:
        return (
            f"{found}, which the {count(layout.machines, 'machine')} of "
            f"{layout.workers_per_machine} already run."
        )
    return (
        f"{found}. The pool of one run cannot grow, so the run starts with "
        f"{count(layout.workers, 'worker')}."
    )


def _warnings(
    request: AdviceRequest, costs: CostProfile, plan: CapacityPlan
) -> list[str]:
    budget = format_seconds(request.budget_seconds)
    warnings: list[str] = []
    if not plan.sizing.meets_budget:
        warnings.append(
            f"No worker count meets the {budget} budget, because the p95 response "
            "time is at least the p95 service time, "
            f"{format_seconds(costs.service.p95)}. Make fewer or smaller variants, "
            "or raise the budget."
        )
    elif plan.burst_workers is None and not plan.bursts_meet_budget:
        warnings.append(
            "Bursts in the simulated day push the worst wait to "
            f"{format_seconds(plan.day.worst_wait_seconds)}, and even "
            f"{MAX_BURST_FACTOR * plan.sizing.workers} workers do not keep it "
            f"within the {budget} budget."
        )
    if costs.estimated:
        warnings.append(
            "Costs are a built-in estimate for 12 MP JPEG photos, not your images. "
            "Measure a sample with `imgflow profile SAMPLE --json FILE` and pass "
            "--profile FILE."
        )
    return warnings


def _ordering_reasons(request: AdviceRequest, layout: Layout) -> list[str]:
    if not request.ordered:
        return []
    if layout.max_machines == 1 and layout.workers == 1:
        return [
            "One image at a time keeps input order strictly; --ordered keeps it "
            "too if the mode changes later."
        ]
    if layout.max_machines == 1:
        return [
            f"--ordered records results in input order, with at most {ORDER_WINDOW} "
            "images running ahead of the oldest unfinished one."
        ]
    return [
        f"Order holds only within one run, so across "
        f"{count(layout.max_machines, 'machine')} send each ordered group (a "
        "series) to one machine and run it with --ordered."
    ]


def _memory_reason(mode: str, resources: Resources, workers_per_machine: int) -> str:
    peak = resources.worker_peak_bytes * workers_per_machine
    if mode == "sequential":
        return (
            f"One image at a time bounds memory at about "
            f"{format_bytes(resources.worker_peak_bytes)}, within the "
            f"{format_bytes(resources.memory_limit_bytes)} limit."
        )
    return (
        f"With {count(workers_per_machine, 'worker')} per machine, memory peaks at "
        f"about {format_bytes(peak)}, within the "
        f"{format_bytes(resources.memory_limit_bytes)} limit."
    )


def time_limit(costs: CostProfile) -> int:
    longest = max(TIME_LIMIT_P99_FACTOR * costs.p99_seconds, 2 * costs.service.max)
    return max(TIME_LIMIT_MIN_SECONDS, math.ceil(longest))


def _run_options(
    request: AdviceRequest,
    costs: CostProfile,
    resources: Resources,
    mode: str,
    workers_per_machine: int,
) -> list[str]:
    run_mode = "parallel" if mode == "distributed" else mode
    options = ["--mode", run_mode]
    if mode != "sequential":
        options += ["--workers", str(workers_per_machine)]
        options += ["--time-limit", str(time_limit(costs))]
        max_rss = _max_worker_rss_mb(costs, resources, workers_per_machine)
        if max_rss != DEFAULT_MAX_WORKER_RSS_MB:
            options += ["--max-worker-rss", str(max_rss)]
    if mode == "pipelined":
        options += ["--queue-size", str(_queue_size(workers_per_machine))]
    if request.ordered:
        options.append("--ordered")
    return options


def _max_worker_rss_mb(
    costs: CostProfile, resources: Resources, workers_per_machine: int
) -> int:
    """Return a worker recycling threshold in MB (--max-worker-rss).

    It sits a quarter above the measured peak, never below imgflow's
    default, and never above the worker's share of the memory limit.
    """
    share = resources.memory_limit_bytes // workers_per_machine // 2**20
    threshold = max(
        DEFAULT_MAX_WORKER_RSS_MB, math.ceil(1.25 * costs.peak_rss_bytes / 2**20)
    )
    return max(64, min(threshold, share))


def _queue_size(workers_per_machine: int) -> int:
    return max(DEFAULT_QUEUE_SIZE, 2 * workers_per_machine)


def _command(mode: str, options: list[str]) -> str:
    return " ".join(["imgflow", "run", "INPUT", "--out", "OUT", *options])


def _queue_bounds(mode: str, plan: CapacityPlan, ordered: bool) -> list[QueueBound]:
    layout = plan.layout
    allowed_wait = max(0.0, plan.budget_seconds - plan.service_p95_seconds)
    target = "the broker queue" if mode == "distributed" else "the input backlog"
    bounds = [
        QueueBound(
            "max waiting images",
            plan.max_waiting_images,
            f"With {count(layout.workers, 'worker')}, "
            f"{count(plan.max_waiting_images, 'waiting image')} take "
            f"{format_seconds(allowed_wait)} to reach a worker, all the wait the "
            f"budget allows. Alert, add workers or shed load when {target} passes it.",
        )
    ]
    if mode == "pipelined":
        bounds.append(
            QueueBound(
                "--queue-size",
                _queue_size(layout.workers_per_machine),
                "Two images per render worker keep every worker busy; the queues "
                "hold references, not pixels, so memory stays small.",
            )
        )
    if ordered and layout.workers > 1:
        bounds.append(
            QueueBound(
                "order window",
                ORDER_WINDOW,
                "Results wait in input order; at most this many images run ahead "
                "of the oldest unfinished one.",
            )
        )
    if mode == "distributed":
        bounds.append(
            QueueBound(
                "prefetch per worker",
                1,
                "Each worker reserves one image at a time, so a slow image never "
                "holds back images that an idle worker could take.",
            )
        )
    return bounds
