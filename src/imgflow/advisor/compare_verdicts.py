"""Group a comparison's measurements by setup and name the leaders.

Each setup's row reports the median over its rounds. Two setups whose
values are close, or whose ranges over the rounds overlap, tie.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from imgflow.advisor.compare_runs import Measurement, Setup

# Results closer than this share of the larger value are called a tie.
NOISE_FRACTION = 0.05


def _median(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


@dataclass(slots=True)
class Row:
    """One setup's measurements over every round, with their medians."""

    setup: Setup
    runs: list[Measurement]

    @property
    def images_per_second(self) -> float:
        return statistics.median(run.images_per_second for run in self.runs)

    def latency(self, quantile: float) -> float | None:
        return _median([run.latency(quantile) for run in self.runs])

    @property
    def peak_rss_bytes(self) -> int:
        return int(statistics.median(run.usage.peak_rss_bytes for run in self.runs))

    @property
    def cpu_utilisation(self) -> float:
        return statistics.median(run.usage.cpu_utilisation for run in self.runs)

    @property
    def cpu_seconds(self) -> float:
        return statistics.median(run.usage.cpu_seconds for run in self.runs)

    @property
    def workers_used(self) -> int:
        return max(run.workers_used for run in self.runs)

    @property
    def typical(self) -> Measurement:
        """The run with the median throughput (the lower one of an even count)."""
        ordered = sorted(self.runs, key=lambda run: run.images_per_second)
        return ordered[(len(ordered) - 1) // 2]

    def throughput_range(self) -> tuple[float, float]:
        values = [run.images_per_second for run in self.runs]
        return min(values), max(values)

    def rss_range(self) -> tuple[int, int]:
        values = [run.usage.peak_rss_bytes for run in self.runs]
        return min(values), max(values)


def make_rows(
    setups: Sequence[Setup], measurements: Sequence[Measurement]
) -> list[Row]:
    """Group measurements by setup, in the order of `setups`."""
    rows = [
        Row(setup, [m for m in measurements if m.setup == setup]) for setup in setups
    ]
    return [row for row in rows if row.runs]


def apart(first: float, second: float) -> float:
    """Return how far apart two values are, as a share of the larger one."""
    larger = max(abs(first), abs(second))
    return abs(first - second) / larger if larger > 0 else 0.0


def _overlap(first: tuple[float, float], second: tuple[float, float]) -> bool:
    return first[0] <= second[1] and second[0] <= first[1]


def _within_noise(
    best: float,
    other: float,
    best_range: tuple[float, float],
    other_range: tuple[float, float],
    rounds: int,
) -> bool:
    """Call two medians a tie when close, or when their rounds' ranges overlap."""
    if apart(best, other) < NOISE_FRACTION:
        return True
    return rounds > 1 and _overlap(best_range, other_range)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The leading setups on one measure, and a sentence that names them."""

    leaders: list[Setup]
    sentence: str


def _noise_clause(rounds: int) -> str:
    clause = f"less than {NOISE_FRACTION:.0%} apart"
    if rounds > 1:
        clause += " or overlapping over the rounds"
    return clause


def _ties(
    ordered: Sequence[Row],
    value: Callable[[Row], float],
    spread: Callable[[Row], tuple[float, float]],
    rounds: int,
) -> list[Row]:
    """Return the leading row and every other row within noise of it."""
    best = ordered[0]
    return [best] + [
        row
        for row in ordered[1:]
        if _within_noise(value(best), value(row), spread(best), spread(row), rounds)
    ]


def _single_round_caveat(margin: float, rounds: int) -> str:
    if rounds > 1 or margin >= 2 * NOISE_FRACTION:
        return ""
    return (
        " From one round, a margin this small may not hold: --rounds 3 reports medians."
    )


def unequal_work(rows: Sequence[Row]) -> str | None:
    """Say why the runs did not do the same work, or return None when they did.

    Throughput and memory compare setups only when every run processed the
    same number of images, and at least one: a rejected file costs almost
    nothing, so a run that rejected more looks faster.
    """
    counts = {run.processed for row in rows for run in row.runs}
    if counts == {0}:
        return "no run processed an image (every file was rejected or failed)"
    idle = [
        row.setup.label for row in rows if any(run.processed == 0 for run in row.runs)
    ]
    if idle:
        return f"{_join(idle)} processed no image"
    if len(counts) > 1:
        details = _join([f"{row.setup.label} {_processed(row)}" for row in rows])
        return f"the runs processed different numbers of images ({details})"
    return None


def _processed(row: Row) -> str:
    low = min(run.processed for run in row.runs)
    high = max(run.processed for run in row.runs)
    return str(low) if low == high else f"{low} to {high}"


def speed_verdict(rows: Sequence[Row], rounds: int) -> Verdict:
    """Name the fastest setup and by how much, or the setups that tie for it.

    Names none when the runs did not process the same images (see
    `unequal_work`).
    """
    reason = unequal_work(rows)
    if reason is not None:
        return Verdict(
            [],
            f"No fastest: {reason}, so throughput does not compare the same "
            "work. `imgflow run` on the sample lists the images that failed.",
        )
    ordered = sorted(rows, key=lambda row: row.images_per_second, reverse=True)
    best = ordered[0]
    if len(ordered) == 1:
        return Verdict(
            [best.setup],
            f"Only {best.setup.label} ran: {best.images_per_second:.2f} images/s.",
        )
    tied = _ties(
        ordered, lambda row: row.images_per_second, Row.throughput_range, rounds
    )
    if len(tied) == 1:
        runner_up = ordered[1]
        sentence = (
            f"Fastest: {best.setup.label} at {best.images_per_second:.2f} images/s, "
            f"{_as_fast(best.images_per_second, runner_up.images_per_second)} "
            f"the next ({runner_up.setup.label}, "
            f"{runner_up.images_per_second:.2f} images/s)."
        )
        sentence += _single_round_caveat(
            apart(best.images_per_second, runner_up.images_per_second), rounds
        )
        return Verdict([best.setup], sentence)
    names = _join(
        [f"{row.setup.label} ({row.images_per_second:.2f} images/s)" for row in tied]
    )
    sentence = (
        f"No clear fastest: {names} are within noise of each other "
        f"({_noise_clause(rounds)})."
    )
    rest = [row for row in ordered if row not in tied]
    if rest:
        sentence += (
            f" The next, {rest[0].setup.label}, ran at "
            f"{rest[0].images_per_second:.2f} images/s."
        )
    return Verdict([row.setup for row in tied], sentence)


def memory_verdict(rows: Sequence[Row], rounds: int) -> Verdict:
    """Name the setup with the lowest peak RSS, or the setups that tie for it.

    Names none when the runs did not process the same images (see
    `unequal_work`).
    """
    reason = unequal_work(rows)
    if reason is not None:
        return Verdict(
            [],
            f"No least memory: {reason}, so peak memory does not compare the "
            "same work.",
        )
    ordered = sorted(rows, key=lambda row: row.peak_rss_bytes)
    best = ordered[0]
    if len(ordered) == 1:
        return Verdict(
            [best.setup],
            f"Only {best.setup.label} ran: peak RSS {_mb(best.peak_rss_bytes)}.",
        )
    tied = _ties(
        ordered,
        lambda row: float(row.peak_rss_bytes),
        lambda row: _floats(row.rss_range()),
        rounds,
    )
    if len(tied) == 1:
        runner_up = ordered[1]
        saving = 1 - best.peak_rss_bytes / max(runner_up.peak_rss_bytes, 1)
        sentence = (
            f"Least memory: {best.setup.label}, peak RSS "
            f"{_mb(best.peak_rss_bytes)}, {saving:.0%} below the next "
            f"({runner_up.setup.label}, {_mb(runner_up.peak_rss_bytes)})."
        )
        sentence += _single_round_caveat(
            apart(best.peak_rss_bytes, runner_up.peak_rss_bytes), rounds
        )
        return Verdict([best.setup], sentence)
    names = _join([f"{row.setup.label} ({_mb(row.peak_rss_bytes)})" for row in tied])
    sentence = (
        f"No clear least memory: the peak RSS of {names} are within noise of "
        f"each other ({_noise_clause(rounds)})."
    )
    return Verdict([row.setup for row in tied], sentence)


def _as_fast(faster: float, slower: float) -> str:
    """Write "1.42x as fast as", or "faster than" when `slower` is 0."""
    return f"{faster / slower:.2f}x as fast as" if slower > 0 else "faster than"


def _join(items: Sequence[str]) -> str:
    """Join items as English does: "a and b", "a, b and c"."""
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _floats(pair: tuple[int, int]) -> tuple[float, float]:
    return float(pair[0]), float(pair[1])


def _mb(value: float) -> str:
    return f"{value / 1e6:.0f} MB"
