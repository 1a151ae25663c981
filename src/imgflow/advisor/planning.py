"""The load, the machine and the capacity plan behind a recommendation.

The plan sizes the worker pool for the planning rate with M/M/c, then
simulates a day of arrivals to find how many workers its bursts need.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import psutil

from imgflow.advisor.capacity import Sizing, latency_method
from imgflow.advisor.costs import CostProfile
from imgflow.advisor.rates import Rate
from imgflow.advisor.simulate import (
    ArrivalPattern,
    Arrivals,
    DayResult,
    ServiceTimes,
    generate_arrivals,
    simulate_day,
)

# The burst search stops at this multiple of the steady worker count.
MAX_BURST_FACTOR = 16
# Erlang C costs O(c) per worker count tried, so pools are sized up to this
# many workers; 10,000 images a minute at 0.19 s each needs 40.
MAX_WORKERS = 100_000
# The plan simulates one day, so a longer latency budget than a year plans
# nothing more. The bound also keeps the queue bounds within float range.
MAX_BUDGET_SECONDS = 365 * 86_400


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
class Layout:
    """The workers the run commands start, and the machines they run on.

    Every machine runs the same command with `workers_per_machine` workers.
    """

    workers_per_machine: int
    machines: int  # at the planning rate
    # Machines while bursts last, when bursts need more than `machines`.
    burst_machines: int | None

    @property
    def workers(self) -> int:
        """Workers running at the planning rate, on all machines."""
        return self.workers_per_machine * self.machines

    @property
    def burst_workers(self) -> int | None:
        """Workers running while bursts last, when machines are added for them."""
        if self.burst_machines is None:
            return None
        return self.workers_per_machine * self.burst_machines

    @property
    def max_machines(self) -> int:
        return self.burst_machines or self.machines


def lay_out(steady: int, burst: int | None, per_machine: int) -> Layout:
    """Spread the workers over machines as the run commands will start them.

    `steady` workers meet the planning rate, `burst` workers (when given)
    also keep the bursts within the budget, and a machine runs at most
    `per_machine`. The pool of one run has a fixed size, so when one
    machine is enough its run starts with the workers the bursts need.
    Across machines, each machine runs `per_machine` workers, and machines
    are added while bursts last.
    """
    if per_machine < 1:
        raise ValueError(f"per_machine must be at least 1, got {per_machine}")
    peak = max(steady, burst or 0)
    if peak <= per_machine:
        return Layout(workers_per_machine=peak, machines=1, burst_machines=None)
    machines = math.ceil(steady / per_machine)
    burst_machines = math.ceil(peak / per_machine)
    return Layout(
        workers_per_machine=per_machine,
        machines=machines,
        burst_machines=burst_machines if burst_machines > machines else None,
    )


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
    layout: Layout
    # Waiting images at which a newly arriving one would miss the budget,
    # with the workers of `layout` at the planning rate.
    max_waiting_images: int
    pattern: ArrivalPattern
    seed: int
    day: DayResult  # with the workers of `sizing`
    one_machine_day: DayResult | None  # when one machine is not enough
    burst_workers: int | None  # minimum workers keeping bursts within budget
    burst_day: DayResult | None  # with burst_workers
    bursts_meet_budget: bool


def arrival_pattern(request: AdviceRequest) -> ArrivalPattern:
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


def machine_resources(request: AdviceRequest, costs: CostProfile) -> Resources:
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


def make_plan(
    request: AdviceRequest,
    costs: CostProfile,
    pattern: ArrivalPattern,
    sizing: Sizing,
    per_machine: int,
) -> CapacityPlan:
    """Simulate the day, size the pool for its bursts and lay out the machines.

    `per_machine` is the most workers one machine runs, at least 1.
    """
    service = costs.service
    allowed_wait = max(0.0, request.budget_seconds - service.p95)
    arrivals = generate_arrivals(pattern, service, seed=request.seed)
    day = simulate_day(arrivals, service, sizing.workers)

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

    layout = lay_out(sizing.workers, burst_workers, per_machine)
    one_machine = None
    if layout.max_machines > 1:
        one_machine = simulate_day(arrivals, service, per_machine)

    return CapacityPlan(
        planning_rate=pattern.peak_rate,
        daily_images=pattern.expected_arrivals(),
        service_seconds=service.mean,
        service_p95_seconds=service.p95,
        offered_load=sizing.estimate.offered_load,
        target_utilisation=request.target_utilisation,
        budget_seconds=request.budget_seconds,
        sizing=sizing,
        latency_method=latency_method(costs.estimated),
        layout=layout,
        max_waiting_images=math.floor(allowed_wait * layout.workers / service.mean),
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
