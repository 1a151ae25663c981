"""A simulated day of arrivals, to see how the queue behaves at its peaks.

Arrivals follow a non-homogeneous Poisson process. Its rate traces a
diurnal cosine between `night_share` of the peak rate (at
`peak_hour` - 12) and the full peak rate (at `peak_hour`). On top of that,
bursts start at Poisson times and raise the rate by `burst_extra` times
the peak rate for `burst_seconds`. Every draw comes from one seeded
`random.Random`, so a seed gives the same day.

Up to MAX_EVENT_ARRIVALS images, the day is simulated image by image: c
workers take images first come, first served, each for a service time
drawn from a lognormal fitted to the measured p50 and p95. Larger days
would take too long in Python, so they are simulated as a fluid queue in
steps of FLUID_STEP_SECONDS. A Poisson count of images arrives per step,
and the workers drain c/S images per second, S being the mean service
time.
The fluid queue ignores the spread of single service times, so it shows
no wait while the pool keeps up. It is meant for the overloaded stretches,
where the backlog dominates the wait.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from dataclasses import dataclass, field

from imgflow.stats import percentile

DAY_SECONDS = 86_400
# Width of one point of the backlog series, in seconds.
SERIES_STEP_SECONDS = 60
# Above this many expected arrivals a day, the fluid simulation is used.
# Image by image, a day of 200,000 images took about 0.6 s to draw and
# simulate on a 2-core x86_64 machine with Python 3.11.
MAX_EVENT_ARRIVALS = 200_000
FLUID_STEP_SECONDS = 5.0
# z of the 95th percentile of a standard normal distribution.
Z95 = 1.6448536269514722


@dataclass(frozen=True, slots=True)
class ArrivalPattern:
    """Shape of a simulated day: a diurnal cycle plus random bursts."""

    peak_rate: float  # images per second at the busiest time of day
    night_share: float = 0.2
    peak_hour: float = 14.0
    bursts_per_day: float = 6.0
    burst_seconds: float = 120.0
    burst_extra: float = 1.0  # added rate during a burst, as a share of peak

    @property
    def mean_share(self) -> float:
        """Mean rate of the diurnal cycle as a share of the peak rate."""
        return (1 + self.night_share) / 2

    def diurnal_rate(self, seconds: float) -> float:
        phase = 2 * math.pi * (seconds / 3600 - self.peak_hour) / 24
        shape = 0.5 + 0.5 * math.cos(phase)
        return self.peak_rate * (self.night_share + (1 - self.night_share) * shape)

    def expected_arrivals(self) -> float:
        base = self.peak_rate * DAY_SECONDS * self.mean_share
        bursts = self.bursts_per_day * self.burst_seconds * self.burst_extra
        return base + bursts * self.peak_rate


@dataclass(frozen=True, slots=True)
class ServiceTimes:
    """Measured service-time figures of one worker, in seconds per image."""

    mean: float
    p50: float
    p95: float
    max: float

    def lognormal(self) -> tuple[float, float, float]:
        """Return (mu, sigma, cap) of the lognormal fitted to p50 and p95.

        The cap is the measured maximum, so no drawn time exceeds what was seen.
        """
        p50 = max(self.p50, 1e-9)
        sigma = max(0.0, math.log(max(self.p95, p50) / p50) / Z95)
        return math.log(p50), sigma, max(self.max, self.p95, p50)


@dataclass(frozen=True, slots=True)
class Arrivals:
    """One day's arrivals, reused for every worker count compared."""

    pattern: ArrivalPattern
    seed: int
    method: str  # "event" (image by image) or "fluid" (FLUID_STEP_SECONDS steps)
    burst_starts: list[float]
    times: list[float] = field(default_factory=list)  # event: arrival times
    services: list[float] = field(default_factory=list)  # event: service times
    counts: list[int] = field(default_factory=list)  # fluid: arrivals per step

    @property
    def total(self) -> int:
        return len(self.times) if self.method == "event" else sum(self.counts)


@dataclass(frozen=True, slots=True)
class DayResult:
    """Backlog and waits over the simulated day with one worker count."""

    workers: int
    method: str
    arrivals: int
    worst_backlog: int  # images waiting for a worker, at the worst moment
    worst_wait_seconds: float
    p95_wait_seconds: float
    p99_wait_seconds: float
    end_backlog: int  # images still waiting at the end of the day
    # Per SERIES_STEP_SECONDS from midnight: max backlog and max wait.
    backlog_series: list[int]
    wait_series: list[float]
    # Whether the image with the worst wait reaches a worker only after the
    # day. Its wait is then a projection: the time the workers need to clear
    # the backlog ahead of it, with no arrivals after midnight.
    worst_wait_past_day: bool = False


def generate_arrivals(
    pattern: ArrivalPattern, service: ServiceTimes, *, seed: int
) -> Arrivals:
    """Draw one day's arrivals (and, image by image, their service times)."""
    rng = random.Random(seed)
    burst_starts = _poisson_times(rng, pattern.bursts_per_day / DAY_SECONDS)
    if pattern.expected_arrivals() > MAX_EVENT_ARRIVALS:
        counts = _fluid_counts(rng, pattern, burst_starts)
        return Arrivals(pattern, seed, "fluid", burst_starts, counts=counts)
    times = _event_times(rng, pattern, burst_starts)
    mu, sigma, cap = service.lognormal()
    services = [min(cap, rng.lognormvariate(mu, sigma)) for _ in times]
    return Arrivals(pattern, seed, "event", burst_starts, times, services)


def simulate_day(arrivals: Arrivals, service: ServiceTimes, workers: int) -> DayResult:
    """Run the day's arrivals through `workers` workers, first come, first served."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if arrivals.method == "event":
        return _simulate_events(arrivals, workers)
    return _simulate_fluid(arrivals, service.mean, workers)


def _burst_rate(pattern: ArrivalPattern, seconds: float, starts: list[float]) -> float:
    index = bisect.bisect_right(starts, seconds) - 1
    if index >= 0 and seconds < starts[index] + pattern.burst_seconds:
        return pattern.burst_extra * pattern.peak_rate
    return 0.0


def _rate(pattern: ArrivalPattern, seconds: float, starts: list[float]) -> float:
    return pattern.diurnal_rate(seconds) + _burst_rate(pattern, seconds, starts)


def _poisson_times(
    rng: random.Random, rate: float, *, start: float = 0.0, end: float = DAY_SECONDS
) -> list[float]:
    times: list[float] = []
    if rate <= 0:
        return times
    now = start + rng.expovariate(rate)
    while now < end:
        times.append(now)
        now += rng.expovariate(rate)
    return times


def _event_times(
    rng: random.Random, pattern: ArrivalPattern, burst_starts: list[float]
) -> list[float]:
    # The diurnal arrivals come by thinning (Lewis and Shedler): draw at the
    # peak rate and keep each candidate with probability rate(t) / peak.
    # Each burst adds its own homogeneous Poisson arrivals, and the union
    # of independent Poisson processes is again one.
    times = [
        t
        for t in _poisson_times(rng, pattern.peak_rate)
        if rng.random() * pattern.peak_rate < pattern.diurnal_rate(t)
    ]
    burst_rate = pattern.burst_extra * pattern.peak_rate
    for start in burst_starts:
        end = min(DAY_SECONDS, start + pattern.burst_seconds)
        times.extend(_poisson_times(rng, burst_rate, start=start, end=end))
    times.sort()
    return times


def _fluid_counts(
    rng: random.Random, pattern: ArrivalPattern, burst_starts: list[float]
) -> list[int]:
    steps = int(DAY_SECONDS / FLUID_STEP_SECONDS)
    # Each step takes the rate at its middle.
    middle = FLUID_STEP_SECONDS / 2
    return [
        _poisson(
            rng,
            _rate(pattern, i * FLUID_STEP_SECONDS + middle, burst_starts)
            * FLUID_STEP_SECONDS,
        )
        for i in range(steps)
    ]


def _poisson(rng: random.Random, mean: float) -> int:
    """Draw a Poisson count, exactly below a mean of 30 and from a normal above.

    Above 30 the normal approximation is within a few percent in the tails,
    which a fluid simulation of thousands of images per step does not feel.
    """
    if mean < 30:
        limit = math.exp(-mean)
        count = 0
        product = rng.random()
        while product > limit:
            count += 1
            product *= rng.random()
        return count
    return max(0, round(rng.gauss(mean, math.sqrt(mean))))


def _simulate_events(arrivals: Arrivals, workers: int) -> DayResult:
    free_at = [0.0] * workers
    starts: list[float] = []
    waits: list[float] = []
    steps = DAY_SECONDS // SERIES_STEP_SECONDS
    backlog_series = [0] * steps
    wait_series = [0.0] * steps
    started = 0
    worst_backlog = 0

    for index, (arrival, service) in enumerate(
        zip(arrivals.times, arrivals.services, strict=True)
    ):
        start = max(arrival, free_at[0])
        heapq.heapreplace(free_at, start + service)
        starts.append(start)
        waits.append(start - arrival)
        # First come, first served keeps start times in arrival order, so
        # the images started by now are a prefix of `starts`.
        while started <= index and starts[started] <= arrival:
            started += 1
        backlog = index + 1 - started
        worst_backlog = max(worst_backlog, backlog)
        step = min(steps - 1, int(arrival // SERIES_STEP_SECONDS))
        backlog_series[step] = max(backlog_series[step], backlog)
        wait_series[step] = max(wait_series[step], start - arrival)

    for step in range(steps):
        # A minute without arrivals still carries the backlog of its start.
        moment = step * SERIES_STEP_SECONDS
        arrived = bisect.bisect_right(arrivals.times, moment)
        waiting = arrived - bisect.bisect_right(starts, moment)
        backlog_series[step] = max(backlog_series[step], waiting)

    end_backlog = len(starts) - bisect.bisect_right(starts, DAY_SECONDS)
    worst = max(range(len(waits)), key=waits.__getitem__, default=None)
    return DayResult(
        workers=workers,
        method="event",
        arrivals=len(waits),
        worst_backlog=worst_backlog,
        worst_wait_seconds=max(waits, default=0.0),
        p95_wait_seconds=percentile(waits, 0.95) or 0.0,
        p99_wait_seconds=percentile(waits, 0.99) or 0.0,
        end_backlog=end_backlog,
        backlog_series=backlog_series,
        wait_series=wait_series,
        worst_wait_past_day=worst is not None and starts[worst] > DAY_SECONDS,
    )


def _simulate_fluid(
    arrivals: Arrivals, service_seconds: float, workers: int
) -> DayResult:
    drain_per_step = workers * FLUID_STEP_SECONDS / service_seconds
    seconds_per_image = service_seconds / workers
    steps_per_point = round(SERIES_STEP_SECONDS / FLUID_STEP_SECONDS)
    points = len(arrivals.counts) // steps_per_point
    backlog_series = [0] * points
    wait_series = [0.0] * points
    # (wait, images) pairs, for percentiles weighted by arrivals.
    weighted: list[tuple[float, int]] = []
    backlog = 0.0
    worst_wait = 0.0
    worst_served_at = 0.0  # when the image with the worst wait reaches a worker
    for index, count in enumerate(arrivals.counts):
        backlog = max(0.0, backlog + count - drain_per_step)
        wait = backlog * seconds_per_image
        if wait > worst_wait:
            worst_wait = wait
            worst_served_at = (index + 1) * FLUID_STEP_SECONDS + wait
        if count:
            weighted.append((wait, count))
        point = min(points - 1, index // steps_per_point)
        backlog_series[point] = max(backlog_series[point], math.ceil(backlog))
        wait_series[point] = max(wait_series[point], wait)
    return DayResult(
        workers=workers,
        method="fluid",
        arrivals=arrivals.total,
        worst_backlog=max(backlog_series, default=0),
        worst_wait_seconds=max(wait_series, default=0.0),
        p95_wait_seconds=_weighted_percentile(weighted, 0.95),
        p99_wait_seconds=_weighted_percentile(weighted, 0.99),
        end_backlog=math.ceil(backlog),
        backlog_series=backlog_series,
        wait_series=wait_series,
        worst_wait_past_day=worst_served_at > DAY_SECONDS,
    )


def _weighted_percentile(pairs: list[tuple[float, int]], quantile: float) -> float:
    """Return the nearest-rank percentile of values repeated by their weights."""
    total = sum(weight for _, weight in pairs)
    if total == 0:
        return 0.0
    rank = max(1, math.ceil(quantile * total))
    seen = 0
    for value, weight in sorted(pairs):
        seen += weight
        if seen >= rank:
            return value
    return sorted(pairs)[-1][0]
