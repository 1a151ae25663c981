"""Run a sample under each execution model and compare what each costs.

Each measurement is one `runner.execute` call with `redo`, writing into its
own scratch output folder, inside a fresh child process started with
`spawn`. A child per run keeps runs apart: memory that one model's run
leaves allocated in a process would otherwise count against the next. The
child measures itself with a `TreeSampler`: wall time, the summed RSS of its
process tree (itself and its workers) and CPU time (its own and that of
the workers it reaped).

Rounds run every setup once, each round starting one setup further along,
and the table reports the median over the rounds.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import shutil
import signal
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imgflow.advisor.profile import machine_facts
from imgflow.config import PipelineConfig
from imgflow.errors import ImgflowError, Status
from imgflow.measure import DEFAULT_INTERVAL_SECONDS, TreeSampler, Usage
from imgflow.records import Source
from imgflow.reporting.html import Page
from imgflow.runner import RunRequest, execute
from imgflow.stats import percentile

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# Results closer than this share of the larger value are called a tie.
NOISE_FRACTION = 0.05
# Seconds a child gets to abandon its run after a stop request before it
# is terminated, and then killed.
STOP_GRACE_SECONDS = 10.0


class ComparisonInterrupted(ImgflowError):
    """Raised when SIGINT or SIGTERM stops a comparison between or during runs."""


class RunLost(ImgflowError):
    """Raised when the child process of a measurement ends without a result."""


@dataclass(frozen=True, slots=True)
class Setup:
    """An execution model with the worker count it is asked to use."""

    mode: str
    workers: int

    @property
    def label(self) -> str:
        return f"{self.mode} with {self._workers_text}"

    @property
    def chart_label(self) -> str:
        """The label on two lines, so that several fit along a chart's axis."""
        return f"{self.mode}\n{self._workers_text}"

    @property
    def _workers_text(self) -> str:
        return f"{self.workers} worker{'s' if self.workers != 1 else ''}"


def plan_setups(modes: Sequence[str], workers: Sequence[int]) -> list[Setup]:
    """List each mode with each worker count. Sequential runs once, with 1."""
    setups: list[Setup] = []
    for mode in modes:
        for count in [1] if mode == "sequential" else workers:
            setup = Setup(mode, count)
            if setup not in setups:
                setups.append(setup)
    return setups


def round_order(setups: Sequence[Setup], round_index: int) -> list[Setup]:
    """Rotate the setups so each round starts one setup further along."""
    shift = round_index % len(setups)
    return [*setups[shift:], *setups[:shift]]


@dataclass(frozen=True, slots=True)
class Measurement:
    """One run of the sample under one setup."""

    setup: Setup
    round_index: int
    workers_used: int
    counts: dict[str, int]
    not_processed: int
    # Seconds from the executor's start to the last result.
    seconds: float
    # ImageResult.seconds of every result (done, rejected or failed), in
    # input order, as `imgflow run` counts them for its p50 and p95.
    latencies: list[float]
    usage: Usage

    @property
    def images(self) -> int:
        return sum(self.counts.values())

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def latency(self, quantile: float) -> float | None:
        return percentile(self.latencies, quantile)


# --- One measurement, in a child process ----------------------------------


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _measure_in_child(
    request: RunRequest,
    sources: list[Source],
    connection: multiprocessing.connection.Connection,
    log_level: int,
) -> None:
    """Run and measure one setup, as the entry point of the child process.

    The parent decides when to stop: the child ignores SIGINT (a Ctrl-C on
    the terminal reaches the whole process group) and turns SIGTERM into a
    KeyboardInterrupt, so that `execute` abandons the run.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    logging.basicConfig(
        level=log_level, format="%(levelname)s %(name)s [pid %(process)d] %(message)s"
    )
    logging.getLogger("pyvips").setLevel(logging.ERROR)
    with TreeSampler() as sampler:
        summary = execute(request, sources, [])
    assert sampler.usage is not None
    latencies = [result.seconds for result in summary.results]
    connection.send(
        (
            summary.workers,
            summary.counts,
            len(summary.not_processed),
            summary.seconds,
            latencies,
            sampler.usage,
        )
    )
    connection.close()


def _stop_child(process: multiprocessing.process.BaseProcess) -> None:
    """Ask a child to abandon its run, then terminate it, then kill it."""
    if process.is_alive():
        process.terminate()
        process.join(STOP_GRACE_SECONDS)
    if process.is_alive():
        log.warning("measurement process %s did not stop; killing it", process.pid)
        process.kill()
    process.join()


def measure(
    setup: Setup,
    round_index: int,
    sources: list[Source],
    config: PipelineConfig,
    out_dir: Path,
    inputs: Sequence[str],
) -> Measurement:
    """Run the sample once under `setup` in a child process and measure it.

    Raises RunLost when the child ends without sending its measurement.
    """
    request = RunRequest(
        inputs=list(inputs),
        out_dir=out_dir,
        config=config,
        mode=setup.mode,
        workers=setup.workers,
        redo=True,
    )
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=_measure_in_child,
        args=(request, sources, sender, logging.getLogger().getEffectiveLevel()),
        name=f"imgflow-compare-{setup.mode}-{setup.workers}",
    )
    process.start()
    sender.close()
    try:
        try:
            payload = receiver.recv()
        except EOFError:
            process.join()
            raise RunLost(
                f"the measurement of {setup.label} ended without a result "
                f"(exit code {process.exitcode}); see the error printed above, "
                "or rerun with -v for its log"
            ) from None
        process.join()
    finally:
        _stop_child(process)
        receiver.close()
    workers_used, counts, not_processed, seconds, latencies, usage = payload
    return Measurement(
        setup=setup,
        round_index=round_index,
        workers_used=workers_used,
        counts=counts,
        not_processed=not_processed,
        seconds=seconds,
        latencies=latencies,
        usage=usage,
    )


@contextlib.contextmanager
def _interrupt_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt, as SIGINT already is, in the main thread."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # Not the main thread: signals cannot be handled here.
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_rounds(
    setups: Sequence[Setup],
    sources: list[Source],
    config: PipelineConfig,
    scratch: Path,
    *,
    inputs: Sequence[str],
    rounds: int = 1,
    on_measured: Callable[[Measurement, int, int], None] | None = None,
) -> list[Measurement]:
    """Measure every setup once per round, in rotating order.

    Each run writes into its own folder under `scratch`, removed as soon as
    the run ends, whether it succeeded or not. `on_measured` gets each
    measurement with its position and the total number of runs.

    Raises ComparisonInterrupted on SIGINT or SIGTERM.
    """
    total = rounds * len(setups)
    measurements: list[Measurement] = []
    position = 0
    try:
        with _interrupt_on_sigterm():
            for round_index in range(rounds):
                for setup in round_order(setups, round_index):
                    position += 1
                    folder = f"run-{position:02d}-{setup.mode}-{setup.workers}"
                    out_dir = scratch / folder
                    try:
                        result = measure(
                            setup, round_index, sources, config, out_dir, inputs
                        )
                    finally:
                        shutil.rmtree(out_dir, ignore_errors=True)
                    measurements.append(result)
                    if on_measured is not None:
                        on_measured(result, position, total)
    except KeyboardInterrupt:
        raise ComparisonInterrupted(
            f"stopped at run {position} of {total}; its output was removed"
        ) from None
    return measurements


# --- Aggregation and verdicts ---------------------------------------------


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


def speed_verdict(rows: Sequence[Row], rounds: int) -> Verdict:
    """Name the fastest setup and by how much, or the setups that tie for it."""
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
    """Name the setup with the lowest peak RSS, or the setups that tie for it."""
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


# --- The comparison as a whole --------------------------------------------


@dataclass(slots=True)
class Comparison:
    """Every measurement of a comparison, grouped by setup, with verdicts."""

    rows: list[Row]
    rounds: int
    files: int
    config_sha256: str
    created: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def speed(self) -> Verdict:
        return speed_verdict(self.rows, self.rounds)

    @property
    def memory(self) -> Verdict:
        return memory_verdict(self.rows, self.rounds)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form written by `imgflow compare --json`."""
        return {
            "version": SCHEMA_VERSION,
            "created": self.created.replace(microsecond=0)
            .isoformat()
            .replace("+00:00", "Z"),
            "machine": machine_facts().model_dump(),
            "config_sha256": self.config_sha256,
            "files": self.files,
            "rounds": self.rounds,
            "noise_fraction": NOISE_FRACTION,
            "fastest": [_setup_json(setup) for setup in self.speed.leaders],
            "least_memory": [_setup_json(setup) for setup in self.memory.leaders],
            "verdicts": [self.speed.sentence, self.memory.sentence],
            "rows": [_row_json(row) for row in self.rows],
        }


def _setup_json(setup: Setup) -> dict[str, Any]:
    return {"mode": setup.mode, "workers": setup.workers}


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _latency_json(source: Row | Measurement) -> dict[str, float | None]:
    return {
        "p50": _rounded(source.latency(0.50)),
        "p95": _rounded(source.latency(0.95)),
        "p99": _rounded(source.latency(0.99)),
    }


def _row_json(row: Row) -> dict[str, Any]:
    typical = row.typical
    return {
        "mode": row.setup.mode,
        "workers": row.setup.workers,
        "workers_used": row.workers_used,
        "images_per_second": round(row.images_per_second, 3),
        "latency_seconds": _latency_json(row),
        "peak_rss_bytes": row.peak_rss_bytes,
        "cpu_utilisation": round(row.cpu_utilisation, 3),
        "cpu_seconds": round(row.cpu_seconds, 3),
        "runs": [
            {
                "round": run.round_index + 1,
                "images": run.images,
                "counts": dict(run.counts),
                "not_processed": run.not_processed,
                "seconds": round(run.seconds, 3),
                "images_per_second": round(run.images_per_second, 3),
                "latency_seconds": _latency_json(run),
                "peak_rss_bytes": run.usage.peak_rss_bytes,
                "cpu_seconds": round(run.usage.cpu_seconds, 3),
                "cpu_utilisation": round(run.usage.cpu_utilisation, 3),
            }
            for run in row.runs
        ],
        "typical_round": typical.round_index + 1,
        "latencies_seconds": [round(value, 4) for value in typical.latencies],
        "rss_series": [[round(t, 2), rss] for t, rss in typical.usage.rss_series],
    }


def unfinished_images(measurements: Sequence[Measurement]) -> int:
    """Return the most images any run left not done (rejected, failed, not processed)."""
    worst = 0
    for run in measurements:
        not_done = run.images - run.counts.get(Status.DONE.value, 0)
        worst = max(worst, not_done + run.not_processed)
    return worst


# --- Tables and the HTML page ----------------------------------------------

TABLE_HEADERS = (
    "mode",
    "workers",
    "images/s",
    "p50 s",
    "p95 s",
    "p99 s",
    "peak RSS MB",
    "CPU use",
)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def table_rows(comparison: Comparison) -> list[list[str]]:
    """Format each row's medians as text, in the order of TABLE_HEADERS."""
    rows = []
    for row in comparison.rows:
        workers = str(row.workers_used)
        if row.workers_used != row.setup.workers:
            workers += f" (of {row.setup.workers} requested)"
        rows.append(
            [
                row.setup.mode,
                workers,
                f"{row.images_per_second:.2f}",
                _seconds(row.latency(0.50)),
                _seconds(row.latency(0.95)),
                _seconds(row.latency(0.99)),
                f"{row.peak_rss_bytes / 1e6:.0f}",
                f"{row.cpu_utilisation:.0%}",
            ]
        )
    return rows


def method_notes(rounds: int) -> list[str]:
    """Say how the numbers were measured, for the page and the terminal."""
    median = "the median over the rounds" if rounds > 1 else "one run"
    return [
        f"Every value is {median}. Each run processed the whole sample with "
        "--redo into its own scratch folder, in a fresh process.",
        "images/s: images finished (done, rejected or failed) per second, from "
        "the executor's start (worker start-up included) to the last result.",
        "p50/p95/p99 s: nearest-rank seconds per image, from the start of its "
        "first stage to the end of its last, so waits between stages count "
        "(pipelined) but the wait before the first stage does not.",
        "peak RSS: the largest sum of the resident memory of the run's process "
        f"and its workers, sampled every {DEFAULT_INTERVAL_SECONDS:g} s. Pages "
        "shared between processes count once per process, so the sum "
        "overstates physical memory.",
        "CPU use: CPU time of the run's process and its workers over the wall "
        "time of all cores.",
    ]


def html_page(comparison: Comparison) -> Page:
    """Build the comparison page: verdicts, table, and three charts as SVG."""
    from imgflow.reporting import charts

    rows = comparison.rows
    page = Page("imgflow compare")
    page.paragraph(
        f"{comparison.files} files under {len(rows)} setups, "
        f"{comparison.rounds} round{'s' if comparison.rounds != 1 else ''}. "
        f"Created {comparison.created:%Y-%m-%d %H:%M} UTC."
    )
    page.bullets([comparison.speed.sentence, comparison.memory.sentence])
    page.heading("Side by side")
    page.table(TABLE_HEADERS, table_rows(comparison))
    page.heading("Throughput")
    page.figure(
        charts.bar_chart(
            [row.setup.chart_label for row in rows],
            [row.images_per_second for row in rows],
            title="Throughput per setup",
            ylabel="images/s",
        ),
        "Images finished per second. Higher is better.",
    )
    page.heading("Latency per image")
    page.figure(
        charts.distribution_chart(
            {row.setup.chart_label: row.typical.latencies for row in rows},
            title="Seconds per image",
            ylabel="seconds",
        ),
        "Boxes span the quartiles and whiskers the 5th to 95th percentile. "
        "Every image is a point. Each setup shows its run of median throughput.",
    )
    page.heading("Memory over time")
    page.figure(
        charts.line_chart(
            {
                row.setup.label: (
                    [t for t, _ in row.typical.usage.rss_series],
                    [rss / 1e6 for _, rss in row.typical.usage.rss_series],
                )
                for row in rows
            },
            title="Resident memory of the process tree",
            xlabel="seconds since the run started",
            ylabel="MB",
        ),
        "Summed RSS of the run's process and its workers, sampled every "
        f"{DEFAULT_INTERVAL_SECONDS:g} s.",
    )
    page.heading("How this was measured")
    page.bullets(method_notes(comparison.rounds))
    return page
