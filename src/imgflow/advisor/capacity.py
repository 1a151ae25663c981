"""Queueing formulas for a pool of identical workers fed by one queue.

The model is M/M/c: Poisson arrivals at rate λ, exponential service times
with mean S, and c workers taking images first come, first served. The
offered load a = λS is the mean number of busy workers, and the pool is
stable only while a < c. Erlang C gives the probability that an image has
to wait, from which the mean wait Wq and the wait quantiles follow.

Image service times are not exponential: they cluster around their mean
with a long tail of large or progressive images. For the same mean, a
narrower spread waits less than M/M/c predicts (by about half for constant
service times), so the M/M/c waits are on the safe side except where the
tail is heavier than exponential.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Share of images whose response time is checked against the budget.
BUDGET_QUANTILE = 0.95

LATENCY_METHOD = (
    "p95 of the M/M/c wait (Erlang C) plus the measured p95 service time, "
    "which usually overstates the p95 of their sum"
)


def latency_method(estimated: bool) -> str:
    """Describe how the response-time quantile is estimated, for output.

    `estimated` is true when the service times come from the built-in
    estimate rather than a profile.
    """
    if estimated:
        return LATENCY_METHOD.replace("measured", "estimated")
    return LATENCY_METHOD


# Workers are searched up to this multiple of the offered load, beyond
# which adding workers no longer shortens a wait measurably.
MAX_SEARCH_FACTOR = 4


def erlang_c(workers: int, offered_load: float) -> float:
    """Return the probability that an arriving image waits in an M/M/c queue.

    Computed through the Erlang B recursion B(k) = a B(k-1) / (k + a B(k-1)),
    which stays within floating-point range for thousands of workers, and
    C = c B / (c - a (1 - B)). Raises ValueError unless 0 <= a < c.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if not 0 <= offered_load < workers:
        raise ValueError(
            f"offered load must be within [0, {workers}) for {workers} workers, "
            f"got {offered_load}; the queue would grow without bound"
        )
    blocking = 1.0
    for k in range(1, workers + 1):
        blocking = offered_load * blocking / (k + offered_load * blocking)
    return workers * blocking / (workers - offered_load * (1 - blocking))


@dataclass(frozen=True, slots=True)
class QueueEstimate:
    """Steady-state M/M/c figures for one worker count."""

    workers: int
    arrival_rate: float  # images per second
    service_seconds: float  # mean
    offered_load: float  # mean busy workers, λS
    utilisation: float  # offered load per worker
    wait_probability: float  # Erlang C
    mean_wait_seconds: float  # Wq
    mean_response_seconds: float  # Wq + S

    def wait_quantile(self, quantile: float) -> float:
        """Return the wait that `quantile` of images stay within.

        In M/M/c, P(wait > t) = C exp(-(c/S - λ) t), so the quantile is 0
        when at least that share never waits.
        """
        tail = 1 - quantile
        if self.wait_probability <= tail:
            return 0.0
        drain_rate = self.workers / self.service_seconds - self.arrival_rate
        return math.log(self.wait_probability / tail) / drain_rate


def mmc(arrival_rate: float, service_seconds: float, workers: int) -> QueueEstimate:
    """Compute the M/M/c figures; raise ValueError when the pool is unstable."""
    if service_seconds <= 0:
        raise ValueError(f"service time must be positive, got {service_seconds}")
    load = arrival_rate * service_seconds
    waiting = erlang_c(workers, load)
    mean_wait = waiting * service_seconds / (workers - load)
    return QueueEstimate(
        workers=workers,
        arrival_rate=arrival_rate,
        service_seconds=service_seconds,
        offered_load=load,
        utilisation=load / workers,
        wait_probability=waiting,
        mean_wait_seconds=mean_wait,
        mean_response_seconds=mean_wait + service_seconds,
    )


def response_quantile(
    estimate: QueueEstimate, service_quantile_seconds: float
) -> float:
    """Estimate the BUDGET_QUANTILE response time, as LATENCY_METHOD states."""
    return estimate.wait_quantile(BUDGET_QUANTILE) + service_quantile_seconds


@dataclass(frozen=True, slots=True)
class Sizing:
    """The worker count chosen for a rate, and which constraint set it."""

    workers: int
    estimate: QueueEstimate
    latency_seconds: float  # response-time estimate at BUDGET_QUANTILE
    meets_budget: bool
    bound_by: str  # "utilisation" or "latency"


def size_pool(
    arrival_rate: float,
    service_seconds: float,
    service_quantile_seconds: float,
    *,
    target_utilisation: float,
    budget_seconds: float,
) -> Sizing:
    """Find the fewest workers that keep both utilisation and latency in bounds.

    Starts at ceil(a / target_utilisation) and adds workers until the
    response-time estimate fits the budget. When the service time alone
    exceeds the budget, no count fits, and the utilisation count is
    returned with `meets_budget` false.
    """
    if not 0 < target_utilisation < 1:
        raise ValueError(
            f"target utilisation must be within (0, 1), got {target_utilisation}"
        )
    load = arrival_rate * service_seconds
    start = max(1, math.ceil(load / target_utilisation - 1e-9))
    if start <= load:
        start = math.floor(load) + 1
    limit = max(start, math.ceil(MAX_SEARCH_FACTOR * load))
    for workers in range(start, limit + 1):
        estimate = mmc(arrival_rate, service_seconds, workers)
        latency = response_quantile(estimate, service_quantile_seconds)
        if latency <= budget_seconds:
            bound_by = "utilisation" if workers == start else "latency"
            return Sizing(workers, estimate, latency, True, bound_by)
        if service_quantile_seconds > budget_seconds:
            break
    estimate = mmc(arrival_rate, service_seconds, start)
    latency = response_quantile(estimate, service_quantile_seconds)
    return Sizing(start, estimate, latency, False, "utilisation")
