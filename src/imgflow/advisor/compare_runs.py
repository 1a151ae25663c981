"""Run a sample once under one execution model, in a child process.

Each measurement is one `runner.execute` call with `redo`, writing into its
own scratch output folder, inside a fresh child process started with
`spawn`. A child per run keeps runs apart: memory that one model's run
leaves allocated in a process would otherwise count against the next. The
child measures itself with a `TreeSampler`: wall time, the summed RSS of its
process tree (itself and its workers) and CPU time (its own and that of
the workers it reaped).

Rounds run every setup once, each round starting one setup further along.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import shutil
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing import resource_tracker
from pathlib import Path

from imgflow.config import PipelineConfig
from imgflow.errors import ImgflowError, Status
from imgflow.executors import pool_workers
from imgflow.executors.base import RunControl
from imgflow.executors.pool import reserved_workers
from imgflow.measure import TreeSampler, Usage
from imgflow.records import Source
from imgflow.runner import RunRequest, execute
from imgflow.stats import percentile

log = logging.getLogger(__name__)

# Seconds a child gets to abandon its run after a stop request before it
# is terminated, and then killed.
STOP_GRACE_SECONDS = 10.0
# Signals that stop a comparison.
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


class ComparisonInterrupted(ImgflowError):
    """Raised when SIGINT or SIGTERM stops a comparison between or during runs.

    `measurements` contains the runs that finished before the stop.
    """

    def __init__(self, message: str, measurements: Sequence[Measurement] = ()) -> None:
        super().__init__(message)
        self.measurements = list(measurements)


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
    def processed(self) -> int:
        """Images that went through the whole pipeline (status done)."""
        return self.counts.get(Status.DONE.value, 0)

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def latency(self, quantile: float) -> float | None:
        return percentile(self.latencies, quantile)


# --- One measurement, in a child process ----------------------------------


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _abandon_on_sigterm(control: RunControl) -> None:
    """Make SIGTERM, the parent's stop request, abandon the child's run.

    The handler only sets the run's stop flags, which the executors check
    between tasks. Raising KeyboardInterrupt instead could land inside a
    libvips log callback, where cffi prints and swallows it. The parent
    names the setup it stopped, so the runner's own warning is silenced:
    it names the run by its catalog id, which is 1 in every child.
    """

    def abandon(_signum: int, _frame: object) -> None:
        logging.getLogger("imgflow.runner").setLevel(logging.ERROR)
        # The second request abandons the images in flight.
        control.request_stop()
        control.request_stop()

    signal.signal(signal.SIGTERM, abandon)


def _measure_in_child(
    request: RunRequest,
    sources: list[Source],
    connection: multiprocessing.connection.Connection,
    log_level: int,
    label: str,
) -> None:
    """Run and measure one setup, as the entry point of the child process.

    The parent decides when to stop: the child ignores SIGINT (a Ctrl-C on
    the terminal reaches the whole process group) and abandons its run on
    SIGTERM. The child starts with both signals blocked (see
    `_stop_signals_blocked`) and unblocks them once its handlers are in
    place. Log lines name the setup, because the runner names every
    child's run as run 1.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    control = request.control()
    _abandon_on_sigterm(control)
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        logging.basicConfig(
            level=log_level,
            format=f"%(levelname)s %(name)s [{label}, pid %(process)d] %(message)s",
        )
        logging.getLogger("pyvips").setLevel(logging.ERROR)
        workers = pool_workers(request.mode, request.workers, len(sources))
        # The reserve comes first: the sampler starts a thread.
        with reserved_workers(workers), TreeSampler() as sampler:
            summary = execute(request, sources, [], control=control)
        if control.stopping:
            return  # The parent asked for the stop and reports it.
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
    finally:
        connection.close()


@contextlib.contextmanager
def _stop_signals_blocked() -> Iterator[None]:
    """Hold STOP_SIGNALS in this thread until the block ends, then deliver them.

    `Process.start` writes the child's start data to a pipe. Interrupted
    halfway, it leaves a child that fails to read that data and prints a
    traceback after the comparison's own message. A child started in the
    block inherits the blocked signals and unblocks them itself.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _stop_child(process: multiprocessing.process.BaseProcess) -> None:
    """Ask a child to abandon its run, then terminate it, then kill it."""
    if process.pid is None:  # Never started.
        return
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
        args=(
            request,
            sources,
            sender,
            logging.getLogger().getEffectiveLevel(),
            setup.label,
        ),
        name=f"imgflow-compare-{setup.mode}-{setup.workers}",
    )
    # Starting the resource tracker unblocks SIGINT and SIGTERM when it is
    # done, which would cut the block below short, so it starts first.
    resource_tracker.ensure_running()
    try:
        with _stop_signals_blocked():
            process.start()
        sender.close()
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
        # Held until the child is gone, so a second stop request cannot leave
        # it running or its output behind.
        with _stop_signals_blocked():
            _stop_child(process)
            sender.close()
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
def _interrupt_on_stop_signals() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into KeyboardInterrupt in the main thread.

    Python leaves SIGINT ignored when the process started with it ignored,
    as a shell without job control starts a background command. `run`
    honours SIGINT then too, so the comparison does the same.
    """
    try:
        previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # Not the main thread: signals cannot be handled here.
        yield
        return
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)


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
    running: Setup | None = None
    try:
        with _interrupt_on_stop_signals():
            for round_index in range(rounds):
                for setup in round_order(setups, round_index):
                    position += 1
                    folder = f"run-{position:02d}-{setup.mode}-{setup.workers}"
                    out_dir = scratch / folder
                    running = setup
                    try:
                        result = measure(
                            setup, round_index, sources, config, out_dir, inputs
                        )
                    finally:
                        # A second stop request must not cut the clean-up short.
                        with _stop_signals_blocked():
                            shutil.rmtree(out_dir, ignore_errors=True)
                    running = None
                    measurements.append(result)
                    if on_measured is not None:
                        # A stop that lands inside a terminal write can
                        # leave half a line, or print it twice.
                        with _stop_signals_blocked():
                            on_measured(result, position, total)
    except KeyboardInterrupt:
        if running is None:
            message = f"stopped after run {position} of {total}."
        else:
            message = (
                f"stopped during run {position} of {total}, {running.label}. "
                "That run was abandoned and its scratch output removed."
            )
        raise ComparisonInterrupted(message, measurements) from None
    return measurements
