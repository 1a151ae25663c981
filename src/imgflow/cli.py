"""The `imgflow` command line."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from imgflow.catalog import SQLiteCatalog
from imgflow.config import load_config, parse_config, starter_config
from imgflow.errors import ConfigError, ExitCode, Status, UsageError
from imgflow.executors import MODES, RunControl
from imgflow.outdir import check_report_path, check_writable, locked
from imgflow.records import display_path
from imgflow.runner import (
    RunRequest,
    RunSummary,
    collect_sources,
    execute,
    write_report,
)
from imgflow.stages.ingest import Filters
from imgflow.stages.store import OutputLayout

MAX_LISTED_PROBLEMS = 50

log = logging.getLogger(__name__)

stderr = Console(stderr=True)
stdout = Console()


def _setup_logging(verbosity: int, quiet: bool) -> None:
    level = logging.WARNING
    if quiet:
        level = logging.ERROR
    elif verbosity == 1:
        level = logging.INFO
    elif verbosity >= 2:
        level = logging.DEBUG
    handler = RichHandler(console=stderr, show_path=False, rich_tracebacks=False)
    handler.setFormatter(logging.Formatter("%(message)s [pid %(process)d]"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # libvips reports recoverable damage (extraneous bytes, a bad tile) as
    # warnings; per image they are noise unless debugging.
    logging.getLogger("pyvips").setLevel(
        logging.WARNING if verbosity >= 2 else logging.ERROR
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="imgflow")
def main() -> None:
    """imgflow: run one image pipeline under the execution model that fits."""


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _summary_table(summary: RunSummary) -> Table:
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
        f"mode {summary.mode}, {_count(summary.workers, 'worker')}, "
        f"{summary.seconds:.1f} s"
    )
    if summary.mode_reason:
        table.caption += f"\nmode chosen because {summary.mode_reason}"
    return table


def _problems_table(summary: RunSummary) -> Table | None:
    problems = [r for r in summary.results if r.status is not Status.DONE]
    if not problems and not summary.issues:
        return None
    table = Table(
        title="Rejected, failed and skipped inputs",
        show_header=True,
        title_justify="left",
    )
    for column in ("source", "status", "stage", "reason", "message"):
        table.add_column(column, overflow="fold")
    for result in problems[:MAX_LISTED_PROBLEMS]:
        table.add_row(
            result.source.path,
            result.status.value,
            result.stage or "",
            result.reason.value if result.reason else "",
            result.message or "",
        )
    for issue in summary.issues[: max(0, MAX_LISTED_PROBLEMS - len(problems))]:
        table.add_row(issue.path, "skipped", "ingest", "", issue.message)
    hidden = len(problems) + len(summary.issues) - MAX_LISTED_PROBLEMS
    if hidden > 0:
        table.caption = f"and {hidden} more; --report FILE lists them all"
    return table


@main.command()
@click.argument("inputs", nargs=-1)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Output folder for variants, sidecars and the catalog.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="TOML pipeline configuration (see `imgflow init`).",
)
@click.option(
    "--mode",
    type=click.Choice(("auto", *MODES)),
    default="auto",
    show_default=True,
    help="Execution model.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes for parallel mode [default: one per CPU core].",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(path_type=Path),
    help="Write a JSON report of every input to this file.",
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
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Retries of an image whose failure may pass (I/O, lost worker, time limit).",
)
@click.option(
    "--retry-delay",
    type=click.FloatRange(min=0),
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
    type=click.FloatRange(min=0.1),
    default=None,
    metavar="SECONDS",
    help="End a worker that spends longer on one image (not in sequential mode).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only errors.")
@click.option(
    "-v", "--verbose", count=True, help="More log output (-v info, -vv debug)."
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
    redo: bool,
    ordered: bool,
    time_limit: float | None,
    quiet: bool,
    verbose: int,
) -> None:
    """Process images from INPUTS (folders, files, or '-' for a list on stdin).

    Exit status: 0 when every image was processed, 1 when some were rejected,
    failed, skipped as unreadable or not processed after a stop, 2 for a usage
    or configuration error.
    """
    _setup_logging(verbose, quiet)
    try:
        config = load_config(config_path)
        if not inputs and not list_files:
            raise UsageError(
                "no input given: name folders or files, or use --files-from"
            )
        check_writable(out_dir)
        if report_path is not None:
            check_report_path(report_path)
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
        )
        sources, issues = collect_sources(request)
        if not sources and issues:
            raise UsageError(
                "no images found: "
                + "; ".join(f"{issue.path}: {issue.message}" for issue in issues[:5])
            )
        with locked(out_dir):
            summary = _execute_with_progress(request, sources, issues, quiet=quiet)
        if report_path is not None:
            write_report(summary, report_path)
    except (ConfigError, UsageError) as exc:
        stderr.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(ExitCode.USAGE)

    if not quiet and summary.skipped and not summary.results:
        stdout.print(
            f"Nothing to do: all {_count(len(summary.skipped), 'image')} were finished by an "
            "earlier run with this configuration (use --redo to process them again).",
            highlight=False,
        )
    elif not quiet:
        if summary.skipped:
            stdout.print(
                f"{_count(len(summary.skipped), 'image')} finished by an earlier run "
                "skipped.",
                highlight=False,
            )
        _print_summary(summary, out_dir)
    sys.exit(ExitCode.OK if summary.all_done else ExitCode.SOME_IMAGES_NOT_DONE)


def _print_summary(summary: RunSummary, out_dir: Path) -> None:
    stdout.print(_summary_table(summary))
    problems = _problems_table(summary)
    if problems is not None:
        stdout.print(problems)
    stdout.print(f"Output: {out_dir.resolve()}", highlight=False)


@contextlib.contextmanager
def _stop_on_signals(control: RunControl) -> Iterator[None]:
    """First SIGINT or SIGTERM stops intake; the second abandons the run."""

    def handle(signum: int, _frame: object) -> None:
        control.request_stop()
        if control.abandoned:
            raise KeyboardInterrupt
        stderr.print(
            f"[yellow]{signal.Signals(signum).name}: finishing the images in progress; "
            "signal again to abandon them[/yellow]"
        )

    previous = {
        sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _execute_with_progress(
    request: RunRequest, sources: list, issues: list, *, quiet: bool
) -> RunSummary:
    control = request.control()
    with _stop_on_signals(control):
        if quiet or not sources:
            return execute(request, sources, issues, control=control)
        return _execute_with_bar(request, sources, issues, control)


def _execute_with_bar(
    request: RunRequest, sources: list, issues: list, control: RunControl
) -> RunSummary:
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
        )


@main.command()
@click.argument("path", type=click.Path(path_type=Path), default="imgflow.toml")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path: Path, force: bool) -> None:
    """Write a commented starter configuration to PATH [default: imgflow.toml]."""
    if path.is_dir():
        stderr.print(f"[red]error:[/red] {path} is a folder; name a file")
        sys.exit(ExitCode.USAGE)
    if path.exists() and not force:
        stderr.print(f"[red]error:[/red] {path} exists; use --force to overwrite it")
        sys.exit(ExitCode.USAGE)
    try:
        path.write_text(starter_config(), encoding="utf-8")
    except OSError as exc:
        stderr.print(f"[red]error:[/red] cannot write {path}: {exc.strerror or exc}")
        sys.exit(ExitCode.USAGE)
    stdout.print(f"Wrote {path}", highlight=False)


@main.command()
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=24,
    show_default=True,
    help="Number of photos.",
)
@click.option(
    "--megapixels",
    type=click.FloatRange(min=0.01, max=100),
    default=12.0,
    show_default=True,
    help="Size of each photo in megapixels (4:3).",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed; the same seed writes the same bytes.",
)
@click.option("--progressive", is_flag=True, help="Write progressive JPEGs.")
def samples(
    out_dir: Path, count: int, megapixels: float, seed: int, progressive: bool
) -> None:
    """Generate realistic sample photos (JPEG with camera EXIF) into OUT_DIR."""
    try:
        from imgflow import samples as generator
    except ImportError as exc:
        stderr.print(
            f"[red]error:[/red] sample generation needs the 'samples' extra "
            f"(pip install 'imgflow[samples]'): {exc}"
        )
        sys.exit(ExitCode.USAGE)
    try:
        paths = generator.generate(
            out_dir, count, megapixels=megapixels, seed=seed, progressive=progressive
        )
    except OSError as exc:
        stderr.print(
            f"[red]error:[/red] cannot write to {out_dir}: {exc.strerror or exc}"
        )
        sys.exit(ExitCode.USAGE)
    stdout.print(
        f"Wrote {_count(len(paths), 'sample photo')} to {out_dir}", highlight=False
    )


@main.group()
def dlq() -> None:
    """List, inspect, retry or purge the dead-letter queue of an output folder.

    An image lands there when it failed on every attempt (I/O errors, lost
    workers, time limits, unexpected errors); rejections never do.
    """


def _open_catalog(out_dir: Path) -> SQLiteCatalog:
    path = OutputLayout(out_dir).catalog
    if not path.is_file():
        stderr.print(
            f"[red]error:[/red] no catalog at {path}; is --out an imgflow output?"
        )
        sys.exit(ExitCode.USAGE)
    return SQLiteCatalog(path)


_OUT_OPTION = click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Output folder of the run.",
)


@dlq.command("list")
@_OUT_OPTION
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object per dead image instead of a table, for scripts.",
)
def dlq_list(out_dir: Path, as_json: bool) -> None:
    """List the dead images, oldest first."""
    catalog = _open_catalog(out_dir)
    try:
        rows = catalog.dead_letters()
    finally:
        catalog.close()
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    if not rows:
        stdout.print("The dead-letter queue is empty.")
        return
    table = Table(title=f"Dead letters in {out_dir}", title_justify="left")
    for column in ("source", "stage", "reason", "attempts", "message"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["source"], row["stage"] or "", row["reason"], str(row["attempts"]),
            row["message"],
        )  # fmt: skip
    stdout.print(table)


@dlq.command("show")
@_OUT_OPTION
@click.argument("source")
def dlq_show(out_dir: Path, source: str) -> None:
    """Show everything recorded about one dead image, traceback included."""
    catalog = _open_catalog(out_dir)
    # The catalog stores absolute paths; accept one relative to here too.
    candidates = {source, display_path(os.path.abspath(source))}
    try:
        rows = [row for row in catalog.dead_letters() if row["source"] in candidates]
    finally:
        catalog.close()
    if not rows:
        stderr.print(f"[red]error:[/red] {source} is not in the dead-letter queue")
        sys.exit(ExitCode.USAGE)
    for name, value in rows[0].items():
        if name != "traceback":
            stdout.print(f"{name}: {value}", highlight=False)
    stdout.print("traceback:", highlight=False)
    stdout.print(rows[0]["traceback"] or "(none recorded)", highlight=False)


@dlq.command("retry")
@_OUT_OPTION
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="Use this configuration instead of the one of the latest run.",
)
@click.option(
    "--mode",
    type=click.Choice(("auto", *MODES)),
    default="auto",
    show_default=True,
    help="Execution model.",
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="Worker processes."
)
@click.option("-q", "--quiet", is_flag=True, help="Print only errors.")
def dlq_retry(
    out_dir: Path, config_path: Path | None, mode: str, workers: int | None, quiet: bool
) -> None:
    """Run the dead images again; those that succeed leave the queue."""
    _setup_logging(0, quiet)
    catalog = _open_catalog(out_dir)
    try:
        dead = [row["source"] for row in catalog.dead_letters()]
        stored = catalog.last_config()
    finally:
        catalog.close()
    if not dead:
        stdout.print("The dead-letter queue is empty; nothing to retry.")
        return
    try:
        if config_path is not None:
            config = load_config(config_path)
        else:
            config = parse_config(
                json.loads(stored or "{}"), source="stored configuration"
            )
        request = RunRequest(
            inputs=dead, out_dir=out_dir, config=config, mode=mode, workers=workers
        )
        sources, issues = collect_sources(request)
        with locked(out_dir):
            summary = _execute_with_progress(request, sources, issues, quiet=quiet)
    except (ConfigError, UsageError) as exc:
        stderr.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(ExitCode.USAGE)
    if not quiet:
        _print_summary(summary, out_dir)
    sys.exit(ExitCode.OK if summary.all_done else ExitCode.SOME_IMAGES_NOT_DONE)


@dlq.command("purge")
@_OUT_OPTION
@click.argument("sources", nargs=-1)
def dlq_purge(out_dir: Path, sources: tuple[str, ...]) -> None:
    """Drop SOURCES (or every dead image) from the queue and the catalog."""
    catalog = _open_catalog(out_dir)
    try:
        dead = {row["source"] for row in catalog.dead_letters()}
        chosen = sorted(dead if not sources else set(sources) & dead)
        unknown = sorted(set(sources) - dead)
        catalog.purge(chosen)
    finally:
        catalog.close()
    for source in unknown:
        stderr.print(f"[yellow]not in the dead-letter queue:[/yellow] {source}")
    stdout.print(f"Purged {_count(len(chosen), 'dead image')}.", highlight=False)
