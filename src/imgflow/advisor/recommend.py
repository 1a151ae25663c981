"""Recommend an execution model, a worker count and queue bounds.

`advise` works through named steps: volume, latency budget, dependencies
and ordering, resources, cost per image, capacity and failure handling.
Each step records a finding and the number behind it, and each reason of
the recommendation quotes one of those numbers.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

import psutil

from imgflow.advisor.capacity import LATENCY_METHOD, Sizing, size_pool
from imgflow.advisor.costs import CostProfile
from imgflow.advisor.rates import Rate, format_rate
from imgflow.advisor.simulate import (
    ArrivalPattern,
    Arrivals,
    DayResult,
    ServiceTimes,
    generate_arrivals,
    simulate_day,
)
from imgflow.errors import UsageError
from imgflow.executors.hybrid import DEFAULT_SMALL_PIXELS
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
# The burst search stops at this multiple of the steady worker count.
MAX_BURST_FACTOR = 16
# Erlang C costs O(c) per worker count tried, so pools are sized up to this
# many workers; 10,000 images a minute at 0.19 s each needs 40.
MAX_WORKERS = 100_000


@dataclass(frozen=True, slots=True)
class AdviceRequest:
    """The expected load: arrival rate, latency budget, order and limits."""

    rate: Rate
    budget_seconds: float
    ordered: bool = False
    memory_limit_bytes: int | None = None  # per machine; None: measured
    cores: int | None = None  # per machine; None: measured
    target_utilisation: float = 0.8
    seed: int = 0


@dataclass(frozen=True, slots=True)
class Step:
    """One step of the decision: what was found and the number behind it."""

    name: str
    finding: str
    number: str


@dataclass(frozen=True, slots=True)
class QueueBound:
    """A bound on one queue, with the reason for its value."""

    name: str
    value: int
    reason: str


@dataclass(frozen=True, slots=True)
class Resources:
    """Cores and memory of one machine, and the workers they allow."""

    cores: int
    cores_source: str
    memory_limit_bytes: int
    memory_source: str
    worker_peak_bytes: int
    workers_by_memory: int
    workers_per_machine: int


@dataclass(frozen=True, slots=True)
class CapacityPlan:
    """Queueing figures for the planning rate and the simulated day."""

    planning_rate: float  # images per second at the busiest time
    daily_images: float  # expected images in the simulated day
    service_seconds: float
    service_p95_seconds: float
    offered_load: float
    target_utilisation: float
    budget_seconds: float
    sizing: Sizing
    latency_method: str
    # Waiting images at which a newly arriving one would miss the budget.
    max_waiting_images: int
    pattern: ArrivalPattern
    seed: int
    day: DayResult  # with the recommended workers
    one_machine_day: DayResult | None  # when one machine is not enough
    burst_workers: int | None  # minimum workers keeping bursts within budget
    burst_day: DayResult | None  # with burst_workers
    bursts_meet_budget: bool


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

    Raises UsageError when the load needs more than MAX_WORKERS workers.
    """
    service = costs.service
    pattern = _pattern(request)
    load = pattern.peak_rate * service.mean
    if load / request.target_utilisation > MAX_WORKERS:
        raise UsageError(
            f"--rate {request.rate} at {format_seconds(service.mean)} per image "
            f"needs about {load / request.target_utilisation:,.0f} workers, more "
            f"than the {MAX_WORKERS:,} this planner sizes. Check the rate's unit."
        )
    resources = _resources(request, costs)
    sizing = size_pool(
        pattern.peak_rate,
        service.mean,
        service.p95,
        target_utilisation=request.target_utilisation,
        budget_seconds=request.budget_seconds,
    )
    per_machine = max(1, resources.workers_per_machine)
    machines = math.ceil(sizing.workers / per_machine)
    plan = _plan(request, costs, pattern, sizing, per_machine, machines)
    recommendation = _recommend(request, costs, resources, plan)
    steps = [
        _volume_step(request, plan),
        _budget_step(request, costs),
        _ordering_step(request, recommendation),
        _resources_step(resources),
        _cost_step(costs),
        _capacity_step(plan, recommendation),
        _failure_step(costs, recommendation),
    ]
    return Advice(request, costs, resources, steps, recommendation, plan)


# --- Inputs -------------------------------------------------------------------


def _pattern(request: AdviceRequest) -> ArrivalPattern:
    """Return the simulated day, its peak at the planning rate.

    A daily total (50/day) is that day's volume, so the peak is the mean
    rate divided by the diurnal cycle's mean share. Any other rate is taken
    as the rate at the busiest time.
    """
    shape = ArrivalPattern(peak_rate=request.rate.per_second)
    if not request.rate.is_daily_total:
        return shape
    return dataclasses.replace(
        shape, peak_rate=request.rate.per_second / shape.mean_share
    )


def _resources(request: AdviceRequest, costs: CostProfile) -> Resources:
    if request.cores is not None:
        cores, cores_source = request.cores, "--cores"
    elif costs.cores is not None:
        cores, cores_source = costs.cores, "the profiled machine"
    else:
        cores, cores_source = os.cpu_count() or 1, "this machine"
    if request.memory_limit_bytes is not None:
        memory, memory_source = request.memory_limit_bytes, "--memory-limit"
    elif costs.memory_bytes is not None:
        memory, memory_source = costs.memory_bytes, "the profiled machine"
    else:
        memory, memory_source = psutil.virtual_memory().total, "this machine"
    by_memory = memory // costs.peak_rss_bytes
    return Resources(
        cores=cores,
        cores_source=cores_source,
        memory_limit_bytes=memory,
        memory_source=memory_source,
        worker_peak_bytes=costs.peak_rss_bytes,
        workers_by_memory=by_memory,
        workers_per_machine=min(cores, by_memory),
    )


# --- Capacity -----------------------------------------------------------------


def _plan(
    request: AdviceRequest,
    costs: CostProfile,
    pattern: ArrivalPattern,
    sizing: Sizing,
    per_machine: int,
    machines: int,
) -> CapacityPlan:
    service = costs.service
    allowed_wait = max(0.0, request.budget_seconds - service.p95)
    arrivals = generate_arrivals(pattern, service, seed=request.seed)
    day = simulate_day(arrivals, service, sizing.workers)

    one_machine = None
    if machines > 1:
        one_machine = simulate_day(arrivals, service, per_machine)

    meets = day.worst_wait_seconds <= allowed_wait and service.p95 <= (
        request.budget_seconds
    )
    burst_workers = None
    burst_day = None
    if not meets:
        burst_workers = _workers_for_bursts(
            arrivals, service, sizing.workers, allowed_wait
        )
    if burst_workers is not None:
        burst_day = simulate_day(arrivals, service, burst_workers)

    return CapacityPlan(
        planning_rate=pattern.peak_rate,
        daily_images=pattern.expected_arrivals(),
        service_seconds=service.mean,
        service_p95_seconds=service.p95,
        offered_load=sizing.estimate.offered_load,
        target_utilisation=request.target_utilisation,
        budget_seconds=request.budget_seconds,
        sizing=sizing,
        latency_method=LATENCY_METHOD,
        max_waiting_images=math.floor(allowed_wait * sizing.workers / service.mean),
        pattern=pattern,
        seed=request.seed,
        day=day,
        one_machine_day=one_machine,
        burst_workers=burst_workers,
        burst_day=burst_day,
        bursts_meet_budget=meets,
    )


def _workers_for_bursts(
    arrivals: Arrivals, service: ServiceTimes, steady: int, allowed_wait: float
) -> int | None:
    """Find the fewest workers whose simulated worst wait fits `allowed_wait`.

    Doubles from `steady` until a count fits, then bisects. Returns None
    when the service time alone uses up the budget or when even
    MAX_BURST_FACTOR times `steady` does not fit.
    """
    if allowed_wait <= 0:
        return None

    def fits(workers: int) -> bool:
        day = simulate_day(arrivals, service, workers)
        return day.worst_wait_seconds <= allowed_wait

    low, high = steady, steady * 2
    while not fits(high):
        low, high = high, high * 2
        if high > steady * MAX_BURST_FACTOR:
            return None
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            high = middle
        else:
            low = middle
    return high


# --- The decision -------------------------------------------------------------


def _choose_mode(
    costs: CostProfile, plan: CapacityPlan, machines: int, per_machine: int
) -> tuple[str, str]:
    """Return the mode and the reason for it, quoting the deciding number."""
    workers = plan.sizing.workers
    estimate = plan.sizing.estimate
    if workers == 1:
        return "sequential", (
            f"One worker carries the load: {estimate.offered_load:.3g} busy workers "
            f"on average, {format_percent(estimate.utilisation)} utilisation. "
            "Worker processes would only add their start-up, about 0.5 s per run."
        )
    if machines > 1:
        return "distributed", (
            f"{workers} workers are needed and one machine runs {per_machine}, so "
            f"the work spreads over {machines} machines fed by one shared queue. "
            "The distributed model (Celery with RabbitMQ) is planned. Until it "
            f"lands, run parallel mode with {per_machine} workers on each machine, "
            "each over its own share of the inputs."
        )
    small = DEFAULT_SMALL_PIXELS / 1e6
    if costs.megapixels_p50 is not None and costs.megapixels_p50 <= small:
        return "hybrid", (
            f"Half the images are at most {costs.megapixels_p50:.2g} MP, within "
            f"the {small:g} MP of hybrid's Pillow fast path, and the rest get "
            "their own libvips pool."
        )
    if costs.io_share is not None and costs.io_share >= PIPELINED_MIN_IO_SHARE:
        return "pipelined", (
            f"Reading and writing files take {costs.io_share:.0%} of the time per "
            "image, and pipelined mode overlaps that I/O with rendering."
        )
    return "parallel", (
        f"{workers} workers fit on one machine, and whole images on a process "
        "pool use every core."
    )


def _recommend(
    request: AdviceRequest,
    costs: CostProfile,
    resources: Resources,
    plan: CapacityPlan,
) -> Recommendation:
    per_machine = max(1, resources.workers_per_machine)
    workers = plan.sizing.workers
    machines = math.ceil(workers / per_machine)
    mode, mode_reason = _choose_mode(costs, plan, machines, per_machine)

    reasons = [mode_reason, *_ordering_reasons(request, workers, machines)]
    if resources.workers_per_machine > 0:
        reasons.append(_memory_reason(mode, resources, min(workers, per_machine)))
    burst_machines = None
    if plan.burst_workers is not None:
        burst_machines = math.ceil(plan.burst_workers / per_machine)
        reasons.append(
            f"Bursts in the simulated day push the worst wait to "
            f"{format_seconds(plan.day.worst_wait_seconds)} with "
            f"{count(workers, 'worker')}. {count(plan.burst_workers, 'worker')} "
            f"({count(burst_machines, 'machine')}) keep it within the budget, so "
            "let the pool grow to that many while the queue is long."
        )

    options = _run_options(request, costs, resources, mode, min(workers, per_machine))
    return Recommendation(
        mode=mode,
        planned=mode == "distributed",
        workers=workers,
        workers_per_machine=min(workers, per_machine),
        machines=machines,
        burst_workers=plan.burst_workers,
        burst_machines=burst_machines,
        ordered=request.ordered,
        options=options,
        command=_command(mode, options),
        queue_bounds=_queue_bounds(mode, plan, per_machine, request.ordered),
        reasons=reasons,
        warnings=_warnings(request, costs, resources, plan),
    )


def _warnings(
    request: AdviceRequest,
    costs: CostProfile,
    resources: Resources,
    plan: CapacityPlan,
) -> list[str]:
    budget = format_seconds(request.budget_seconds)
    warnings: list[str] = []
    if resources.workers_per_machine == 0:
        warnings.append(
            f"One worker peaks at {format_bytes(costs.peak_rss_bytes)}, more than "
            f"the {format_bytes(resources.memory_limit_bytes)} memory limit. Raise "
            "--memory-limit, or lower validate.max_pixels so that the largest "
            "images are rejected."
        )
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


def _ordering_reasons(request: AdviceRequest, workers: int, machines: int) -> list[str]:
    if not request.ordered:
        return []
    if workers == 1:
        return [
            "One image at a time keeps input order strictly; --ordered keeps it "
            "too if the mode changes later."
        ]
    if machines == 1:
        return [
            f"--ordered records results in input order, with at most {ORDER_WINDOW} "
            "images running ahead of the oldest unfinished one."
        ]
    return [
        f"Order holds only within one run, so across {machines} machines send "
        "each ordered group (a series) to one machine and run it with --ordered."
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
        f"{count(workers_per_machine, 'worker')} per machine peak at about "
        f"{format_bytes(peak)} together, within the "
        f"{format_bytes(resources.memory_limit_bytes)} limit."
    )


def _time_limit(costs: CostProfile) -> int:
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
        options += ["--time-limit", str(_time_limit(costs))]
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
    share = resources.memory_limit_bytes // max(1, workers_per_machine) // 2**20
    threshold = max(
        DEFAULT_MAX_WORKER_RSS_MB, math.ceil(1.25 * costs.peak_rss_bytes / 2**20)
    )
    return max(64, min(threshold, share))


def _queue_size(workers_per_machine: int) -> int:
    return max(DEFAULT_QUEUE_SIZE, 2 * workers_per_machine)


def _command(mode: str, options: list[str]) -> str:
    return " ".join(["imgflow", "run", "INPUT", "--out", "OUT", *options])


def _queue_bounds(
    mode: str, plan: CapacityPlan, per_machine: int, ordered: bool
) -> list[QueueBound]:
    allowed_wait = max(0.0, plan.budget_seconds - plan.service_p95_seconds)
    target = "the broker queue" if mode == "distributed" else "the input backlog"
    bounds = [
        QueueBound(
            "max waiting images",
            plan.max_waiting_images,
            f"With {count(plan.sizing.workers, 'worker')}, "
            f"{count(plan.max_waiting_images, 'waiting image')} take "
            f"{format_seconds(allowed_wait)} to reach a worker, all the wait the "
            f"budget allows. Alert, add workers or shed load when {target} passes it.",
        )
    ]
    if mode == "pipelined":
        bounds.append(
            QueueBound(
                "--queue-size",
                _queue_size(per_machine),
                "Two images per render worker keep every worker busy; the queues "
                "hold references, not pixels, so memory stays small.",
            )
        )
    if ordered and plan.sizing.workers > 1:
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


# --- Steps --------------------------------------------------------------------


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
            f"{plan.daily_images:,.0f} images."
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
    if recommendation.workers == 1:
        return Step(
            "dependencies and ordering",
            f"{independent} Order was requested, and one worker takes images in "
            "input order, so it holds with no reorder buffer.",
            "strict order",
        )
    if recommendation.machines == 1:
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
        f"and the work needs {recommendation.machines} machines.",
        "order per machine",
    )


def _resources_step(resources: Resources) -> Step:
    finding = (
        f"A machine has {resources.cores} cores ({resources.cores_source}) and "
        f"{format_bytes(resources.memory_limit_bytes)} of memory "
        f"({resources.memory_source}). One worker peaks at "
        f"{format_bytes(resources.worker_peak_bytes)}, so memory allows "
        f"{resources.workers_by_memory} workers and the cores {resources.cores}."
    )
    if resources.workers_per_machine == 0:
        finding += " Not even one worker fits in the memory limit."
    return Step(
        "resources", finding, f"{resources.workers_per_machine} workers per machine"
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


def _capacity_step(plan: CapacityPlan, recommendation: Recommendation) -> Step:
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
    if recommendation.machines > 1:
        finding += (
            f" One machine runs {recommendation.workers_per_machine} workers, so "
            f"one machine is not enough: {recommendation.machines} machines are needed."
        )
    return Step("capacity", finding, count(sizing.workers, "worker"))


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
    limit = _time_limit(costs)
    return Step(
        "failure handling",
        f"{retry} With --time-limit {limit} s ({TIME_LIMIT_P99_FACTOR} times the p99 "
        "service time or twice the longest measured image, and at least "
        f"{TIME_LIMIT_MIN_SECONDS} s), a stuck image costs "
        f"at most {(RETRIES + 1) * limit} s of worker time.",
        f"--time-limit {limit} s",
    )


def format_bytes(count: float) -> str:
    """Write a byte count in decimal units (kB to TB), as --memory-limit takes them."""
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count / 10**3:.3g} kB"


def format_seconds(seconds: float) -> str:
    """Write a duration in seconds, in ms below 10 ms and in hours past two hours."""
    if seconds >= 7200:
        return f"{seconds / 3600:,.1f} h"
    if seconds >= 100:
        return f"{seconds:,.0f} s"
    if 0 < seconds < 0.01:
        return f"{seconds * 1000:.2g} ms"
    return f"{seconds:.3g} s"


def format_percent(share: float) -> str:
    """Write a share as a percentage with at least one significant digit."""
    if 0 < share < 0.01:
        return f"{share:.2%}"
    return f"{share:.1%}"


def count(number: int, noun: str) -> str:
    """Write a count and its noun, plural unless the count is 1."""
    return f"{number:,} {noun}{'' if number == 1 else 's'}"
