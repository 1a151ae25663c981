"""`imgflow run`: process images and show progress and a summary."""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from imgflow.cli.app import (
    CONFIG_OPTION,
    LOG_FORMAT_OPTION,
    FiniteFloat,
    plain_cell,
    plural,
    print_error,
    setup_logging,
    stderr,
    stdout,
)
from imgflow.config import load_config
from imgflow.errors import ConfigError, ExitCode, Status, UsageError
from imgflow.executors import MODES, RunControl, pool_workers
from imgflow.executors.hybrid import ENGINES
from imgflow.executors.parallel import default_workers
from imgflow.executors.pool import reserved_workers
from imgflow.outdir import check_output_file, check_writable, locked, remove_created
from imgflow.records import Source, display_path
from imgflow.runner import (
    RunRequest,
    RunSummary,
    collect_sources,
    execute,
    write_html_report,
    write_report,
)
from imgflow.stages.ingest import Filters
from imgflow.stages.store import OutputLayout
from imgflow.stages.validate import SNIFF_BYTES, sniff_format
from imgflow.telemetry.logs import LogFormat, current_log_settings, escape_controls

if TYPE_CHECKING:
    from rich.table import Table

    from imgflow.telemetry.metrics import RunMetrics
from imgflow.telemetry import DEFAULT_METRICS_ADDRESS

MAX_LISTED_PROBLEMS = 50
# An hour between attempts is already far past any transient fault.
MAX_RETRY_DELAY_SECONDS = 3600.0
# The backoff doubles per attempt, so far beyond this it overflows a float.
MAX_RETRIES = 100
# Each worker is a process with its own memory, so thousands of them would
# exhaust a machine long before they sped anything up.
MAX_WORKERS = 512
# Above this many workers per core, a run warns that they compete.
OVERSUBSCRIBED_PER_CORE = 4

log = logging.getLogger(__name__)


def _summary_table(summary: RunSummary) -> Table:
    from rich.table import Table

    table = Table(title="imgflow run", show_header=True)
    for column in (
        "done",
        "rejected",
        "failed",
        "not processed",
        "images/s",
        "p50 s/image",
        "p95 s/image",
    ):
        table.add_column(column, justify="right")
    p50 = summary.latency(0.5)
    p95 = summary.latency(0.95)
    table.add_row(
        str(summary.counts.get("done", 0)),
        str(summary.counts.get("rejected", 0)),
        str(summary.counts.get("failed", 0)),
        str(len(summary.not_processed)),
        f"{summary.images_per_second:.2f}",
        "-" if p50 is None else f"{p50:.3f}",
        "-" if p95 is None else f"{p95:.3f}",
    )
    table.caption = (
        f"mode {summary.mode}, {plural(summary.workers, 'worker')}, "
        f"{summary.seconds:.1f} s"
    )
    if summary.mode_reason:
        table.caption += f"\nmode chosen because {summary.mode_reason}"
    return table


def _problems_table(summary: RunSummary) -> Table | None:
    problems = [r for r in summary.results if r.status is not Status.DONE]
    if not problems and not summary.issues and not summary.not_processed:
        return None
    from rich.table import Table

    table = Table(
        title="Rejected, failed, unread and unprocessed inputs",
        show_header=True,
        title_justify="left",
    )
    for column in ("source", "status", "stage", "reason", "message"):
        table.add_column(column, overflow="fold")
    for result in problems[:MAX_LISTED_PROBLEMS]:
        table.add_row(
            plain_cell(result.source.text),
            result.status.value,
            result.stage or "",
            result.reason.value if result.reason else "",
            plain_cell(result.message or ""),
        )
    room = max(0, MAX_LISTED_PROBLEMS - len(problems))
    for issue in summary.issues[:room]:
        table.add_row(
            plain_cell(issue.path), "not read", "ingest", "", plain_cell(issue.message)
        )
    room = max(0, room - len(summary.issues))
    for source in summary.not_processed[:room]:
        table.add_row(
            plain_cell(source.text),
            "not processed",
            "",
            "",
            "stopped before it finished",
        )
    listed = len(problems) + len(summary.issues) + len(summary.not_processed)
    hidden = listed - MAX_LISTED_PROBLEMS
    if hidden > 0:
        table.caption = f"and {hidden} more; --report FILE lists them all"
    return table


@click.command()
@click.argument("inputs", nargs=-1)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Output folder for variants, sidecars and the catalog.",
)
@CONFIG_OPTION
@click.option(
    "--mode",
    type=click.Choice(("auto", *MODES)),
    default="auto",
    show_default=True,
    help="Execution model.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1, max=MAX_WORKERS),
    default=None,
    help=(
        "Worker processes [default: one per CPU core]; hybrid mode shares them "
        "between small batches and other images. Sequential mode runs in one "
        "process."
    ),
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(path_type=Path),
    help="Write a JSON report of every input to this file.",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(path_type=Path),
    help="Write the run report as an HTML page with charts to this file.",
)
@click.option(
    "--include",
    multiple=True,
    metavar="GLOB",
    help="Only files whose name or relative path matches (repeatable).",
)
@click.option(
    "--exclude",
    multiple=True,
    metavar="GLOB",
    help="Skip files whose name or relative path matches (repeatable).",
)
@click.option(
    "--files-from",
    "list_files",
    multiple=True,
    metavar="FILE",
    help="Read input paths from FILE, one per line ('-' for stdin).",
)
@click.option(
    "--queue-size",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Bound of each queue between stages in pipelined mode.",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0, max=MAX_RETRIES),
    default=2,
    show_default=True,
    help="Retries of an image whose failure may pass (I/O, lost worker, time limit).",
)
@click.option(
    "--retry-delay",
    type=FiniteFloat(min=0, max=MAX_RETRY_DELAY_SECONDS),
    default=0.5,
    show_default=True,
    metavar="SECONDS",
    help="Base of the exponential backoff between retries.",
)
@click.option(
    "--max-worker-rss",
    type=click.IntRange(min=64),
    default=1024,
    show_default=True,
    metavar="MB",
    help="Recycle a worker process between images once its resident memory passes this.",
)
@click.option(
    "--small-engine",
    type=click.Choice(ENGINES),
    default="vips",
    show_default=True,
    help="Engine for hybrid's batches of small photos (Pillow checks each scan "
    "with libvips first).",
)
@click.option(
    "--redo",
    is_flag=True,
    help="Process every input again, even those an earlier run finished.",
)
@click.option(
    "--ordered",
    is_flag=True,
    help="Record results in input order (catalog and report).",
)
@click.option(
    "--time-limit",
    type=FiniteFloat(min=0.1),
    default=None,
    metavar="SECONDS",
    help="End a worker that spends longer on one image (not in sequential mode).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    default=None,
    metavar="PORT",
    help="Serve Prometheus metrics on this port while the run lasts (0 picks a free port).",
)
@click.option(
    "--metrics-address",
    default=DEFAULT_METRICS_ADDRESS,
    show_default=True,
    metavar="ADDRESS",
    help="Address the metrics endpoint listens on.",
)
@LOG_FORMAT_OPTION
@click.option("-q", "--quiet", is_flag=True, help="Print only errors.")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="More log output (-v one line per image, -vv debug).",
)
def run(
    inputs: tuple[str, ...],
    out_dir: Path,
    config_path: Path | None,
    mode: str,
    workers: int | None,
    report_path: Path | None,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    list_files: tuple[str, ...],
    queue_size: int,
    retries: int,
    retry_delay: float,
    max_worker_rss: int,
    small_engine: str,
    redo: bool,
    ordered: bool,
    time_limit: float | None,
    html_path: Path | None,
    metrics_port: int | None,
    metrics_address: str,
    log_format: LogFormat,
    quiet: bool,
    verbose: int,
) -> None:
    """Process images from INPUTS (folders, files, or '-' for a list on stdin).

    Exit status: 0 when every image was processed, 1 when some were rejected,
    failed, not read (a missing or unreadable input) or not processed after a
    stop, 2 for a usage or configuration error.
    """
    setup_logging(verbose, quiet, log_format)
    stop = _SignalStop()
    with stop.installed():
        created: Path | None = None
        try:
            config = load_config(config_path)
            if not inputs and not list_files:
                raise UsageError(
                    "no input given: name folders or files, or use --files-from"
                )
            created = check_writable(out_dir)
            if report_path is not None:
                check_output_file(report_path, "--report")
            if html_path is not None:
                check_output_file(html_path, "--html")
            cores = default_workers()
            if workers is not None and workers > OVERSUBSCRIBED_PER_CORE * cores:
                log.warning(
                    "--workers %d on %d cores: the workers compete for the cores, "
                    "and each holds its own memory (about 100 MB on 12 MP photos)",
                    workers,
                    cores,
                )
            if time_limit is not None and mode == "sequential":
                log.warning(
                    "--time-limit is not enforced in sequential mode: a stuck decode "
                    "cannot be interrupted inside the process"
                )
            request = RunRequest(
                inputs=inputs,
                out_dir=out_dir,
                config=config,
                mode=mode,
                workers=workers,
                filters=Filters(include=include, exclude=exclude),
                list_files=list_files,
                ordered=ordered,
                time_limit=time_limit,
                queue_size=queue_size,
                redo=redo,
                retries=retries,
                retry_delay=retry_delay,
                max_worker_rss_mb=max_worker_rss,
                small_engine=small_engine,
            )
            if report_path is not None and html_path is not None:
                if os.path.realpath(report_path) == os.path.realpath(html_path):
                    raise UsageError(
                        f"--report and --html name the same file {report_path}; "
                        "name two files"
                    )
            _check_inputs_outside(request)
            sources, issues = collect_sources(request)
            for option, path in (("--report", report_path), ("--html", html_path)):
                if path is not None:
                    sources = _check_not_overwritten(path, option, request, sources)
            if not sources and issues:
                raise UsageError(
                    "no images found: "
                    + "; ".join(
                        f"{escape_controls(display_path(issue.path))}: {issue.message}"
                        for issue in issues[:5]
                    )
                )
            if not sources and (include or exclude):
                patterns = [f"--include {p!r}" for p in include]
                patterns += [f"--exclude {p!r}" for p in exclude]
                raise UsageError(
                    f"no input file passes {', '.join(patterns)}; patterns match "
                    "names or paths below the input folder (see --help)"
                )
            stop.control = request.control()
            with (
                # First, while this process has one thread and no output file open.
                reserved_workers(pool_workers(mode, workers, len(sources))),
                locked(out_dir),
                _metrics(metrics_port, metrics_address, announce=not quiet) as metrics,
            ):
                summary = execute_with_progress(
                    request,
                    sources,
                    issues,
                    # A progress bar would break the one-object-per-line stream.
                    quiet=quiet or log_format == "json",
                    metrics=metrics,
                    control=stop.control,
                )
            if report_path is not None:
                write_report(summary, report_path)
            if html_path is not None:
                write_html_report(summary, html_path)
        except (ConfigError, UsageError) as exc:
            # A run that never started leaves no empty output folder behind.
            remove_created(out_dir, created)
            print_error(str(exc))
            sys.exit(ExitCode.USAGE)

        # With JSON logs the run_finished record carries the summary, and a
        # table would break a stream that a collector merges with stderr.
        quiet = quiet or log_format == "json"
        if not quiet and summary.skipped and not summary.results:
            stdout.print(
                f"Nothing to do: all {plural(len(summary.skipped), 'image')} were finished by an "
                "earlier run with this configuration (use --redo to process them again).",
                highlight=False,
            )
        elif not quiet:
            if summary.skipped:
                stdout.print(
                    f"{plural(len(summary.skipped), 'image')} finished by an earlier run "
                    "skipped.",
                    highlight=False,
                )
            print_summary(summary, out_dir)
        sys.exit(ExitCode.OK if summary.all_done else ExitCode.SOME_IMAGES_NOT_DONE)


def _check_inputs_outside(request: RunRequest) -> None:
    """Reject an input inside the output folder, and stdin named twice.

    Listing skips the output folder, so such an input would give nothing.
    """
    stdin_uses = [*request.inputs, *request.list_files].count("-")
    if stdin_uses > 1:
        raise UsageError(
            f"'-' (standard input) is given {stdin_uses} times; it can be read once"
        )
    out = Path(os.path.realpath(request.out_dir))
    for name in request.inputs:
        if name == "-":
            continue
        path = Path(os.path.realpath(name))
        if path == out or out in path.parents:
            raise UsageError(
                f"the input {name} is inside the output folder {request.out_dir}, "
                "whose contents imgflow skips; choose an --out outside the inputs"
            )


def _check_not_overwritten(
    path: Path, option: str, request: RunRequest, sources: list[Source]
) -> list[Source]:
    """Reject a report path that would replace an input or a file imgflow keeps.

    A report that an earlier run wrote among the inputs is no image: it is
    left out of the inputs and replaced, so the same command runs again.
    Returns the sources to process.
    """
    layout = OutputLayout(request.out_dir)
    if layout.manages(path, request.config.variants):
        raise UsageError(
            f"{option} {path} would replace a file imgflow keeps in the output "
            f"folder {request.out_dir}; name another file"
        )
    try:
        target = os.stat(path)
    except OSError:
        return sources  # A new file replaces nothing.
    for source in sources:
        if source.size != target.st_size:
            continue
        same = False
        with contextlib.suppress(OSError):
            same = os.path.samefile(source.path, path)
        if not same:
            continue
        if not _is_image(source.path):
            remaining = [other for other in sources if other is not source]
            # Indexes stay the input order without a gap.
            return [replace(other, index=i) for i, other in enumerate(remaining)]
        raise UsageError(
            f"{option} {path} would replace the input image {source.text}; "
            "name another file"
        )
    if _is_image(str(path)):
        raise UsageError(f"{option} {path} would replace an image; name another file")
    return sources


def _is_image(path: str) -> bool:
    """True when the file's first bytes are those of an image format."""
    try:
        with open(path, "rb") as handle:
            return sniff_format(handle.read(SNIFF_BYTES)) is not None
    except OSError:
        return True  # Unknown: treat it as an input, to be safe.


def print_summary(summary: RunSummary, out_dir: Path) -> None:
    stdout.print(_summary_table(summary))
    problems = _problems_table(summary)
    if problems is not None:
        stdout.print(problems)
    if summary.not_processed:
        stdout.print(
            f"{plural(len(summary.not_processed), 'image')} not processed: the same "
            "command processes them, and skips the finished ones.",
            highlight=False,
        )
    if summary.not_recorded:
        stdout.print(
            f"{plural(len(summary.not_recorded), 'image')} finished after the catalog "
            "write failed, so the catalog does not list them: once the catalog can "
            "be written, the same command processes them again.",
            highlight=False,
        )
    stdout.print(f"Output: {out_dir.resolve()}", highlight=False)


class _SignalStop:
    """A run's handling of SIGINT and SIGTERM, in three steps.

    Before the run starts, a signal interrupts the command. During the run,
    the first stops intake and lets the images in progress finish, and the
    second abandons them. Both only set the run's flags, so the report and
    the summary are still written. A third signal interrupts at once.
    """

    def __init__(self) -> None:
        self.control: RunControl | None = None

    def handle(self, signum: int, _frame: object) -> None:
        control = self.control
        if control is None or control.abandoned:
            raise KeyboardInterrupt
        control.request_stop()
        name = signal.Signals(signum).name
        if control.abandoned:
            _announce(
                f"{name}: abandoning the images in progress; signal again to stop "
                "at once"
            )
        else:
            _announce(
                f"{name}: finishing the images in progress; signal again to "
                "abandon them"
            )

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Handle both signals for the block, then restore the earlier handlers.

        Once the interpreter starts to exit, both are ignored: the report is
        written, and a signal in the last milliseconds would otherwise end
        the command with the signal's status instead of its own.
        """
        _ignore_stop_signals_at_exit()
        previous = {
            sig: signal.signal(sig, self.handle)
            for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


@functools.cache
def _ignore_stop_signals_at_exit() -> None:
    def ignore() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)

    atexit.register(ignore)


def _announce(message: str) -> None:
    """Tell the user about a stop request, as a JSON record with JSON logs.

    It runs in a signal handler, which may interrupt the first import of
    Rich, so it writes plain text instead of going through a Rich console.
    """
    settings = current_log_settings()
    if settings is not None and settings.format == "json":
        log.warning(message, extra={"event": "stop_requested"})
    else:
        sys.stderr.write(f"{message}\n")
        sys.stderr.flush()


@contextlib.contextmanager
def _metrics(
    port: int | None, address: str, *, announce: bool
) -> Iterator[RunMetrics | None]:
    """Serve run metrics for the duration of the block when a port is given."""
    if port is None:
        if address != DEFAULT_METRICS_ADDRESS:
            raise UsageError("--metrics-address needs --metrics-port")
        yield None
        return
    if not address.strip():
        raise UsageError("--metrics-address is empty; give an IP address or host name")
    from imgflow.telemetry.metrics import RunMetrics, serve_metrics

    metrics = RunMetrics()
    try:
        server = serve_metrics(metrics.registry, port, address)
    except OSError as exc:
        raise UsageError(
            f"cannot serve metrics on {address} port {port}: {exc.strerror or exc}; "
            "choose another --metrics-port or --metrics-address"
        ) from exc
    log.info(
        "serving metrics on %s",
        server.url,
        extra={"event": "metrics_serving", "url": server.url},
    )
    if announce:
        # On stdout, so the chosen port is visible without -v and never
        # mixes with JSON log lines on stderr.
        stdout.print(f"Serving metrics at {server.url}", highlight=False)
    try:
        yield metrics
    finally:
        server.close()


def execute_with_progress(
    request: RunRequest,
    sources: list,
    issues: list,
    *,
    quiet: bool,
    metrics: RunMetrics | None = None,
    control: RunControl | None = None,
) -> RunSummary:
    """Run with a progress bar on stderr, unless `quiet`, and stop on signals.

    A caller that passes `control` handles the signals itself.
    """
    if control is None:
        stop = _SignalStop()
        stop.control = request.control()
        with stop.installed():
            return execute_with_progress(
                request,
                sources,
                issues,
                quiet=quiet,
                metrics=metrics,
                control=stop.control,
            )
    if quiet or not sources:
        return execute(request, sources, issues, control=control, metrics=metrics)
    return _execute_with_bar(request, sources, issues, control, metrics)


def _execute_with_bar(
    request: RunRequest,
    sources: list,
    issues: list,
    control: RunControl,
    metrics: RunMetrics | None,
) -> RunSummary:
    # Imported here: a quiet run, as in scripts, has no bar to draw.
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=stderr, transient=False) as progress:
        task = progress.add_task("images", total=len(sources), rate="")

        def advance(_result: object) -> None:
            elapsed = progress.tasks[task].elapsed or 0.0
            completed = progress.tasks[task].completed + 1
            rate = f"{completed / elapsed:.1f}/s" if elapsed > 0 else ""
            progress.update(task, advance=1, rate=rate)

        return execute(
            request,
            sources,
            issues,
            on_result=advance,
            on_start=lambda total: progress.update(task, total=total),
            control=control,
            metrics=metrics,
        )
