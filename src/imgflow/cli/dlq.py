"""`imgflow dlq`: the dead-letter queue of an output folder."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import click
from rich.table import Table

from imgflow.catalog import SQLiteCatalog
from imgflow.cli.app import (
    plain_cell,
    plural,
    print_error,
    setup_logging,
    stderr,
    stdout,
)
from imgflow.cli.run import execute_with_progress, print_summary
from imgflow.config import load_config, parse_config
from imgflow.errors import ConfigError, ExitCode, UsageError
from imgflow.executors import MODES
from imgflow.outdir import locked
from imgflow.records import display_path, path_of_text
from imgflow.runner import RunRequest, collect_sources
from imgflow.stages.store import OutputLayout


@click.group()
def dlq() -> None:
    """List, inspect, retry or purge the dead-letter queue of an output folder.

    An image lands there when it failed on every attempt (I/O errors, lost
    workers, time limits, unexpected errors); rejections never do.
    """


def _open_catalog(out_dir: Path) -> SQLiteCatalog:
    path = OutputLayout(out_dir).catalog
    if not path.exists():
        stderr.print(
            f"[red]error:[/red] no catalog at {path}; is --out an imgflow output?"
        )
        sys.exit(ExitCode.USAGE)
    try:
        return SQLiteCatalog(path)
    except UsageError as exc:
        print_error(str(exc))
        sys.exit(ExitCode.USAGE)


@contextlib.contextmanager
def _using(catalog: SQLiteCatalog) -> Iterator[None]:
    """Close the catalog after the block, and exit with status 2 on a SQLite error."""
    try:
        with catalog.errors_as_usage_errors("be read"):
            yield
    except UsageError as exc:
        print_error(str(exc))
        sys.exit(ExitCode.USAGE)
    finally:
        catalog.close()


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
    with _using(catalog):
        rows = catalog.dead_letters()
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
            plain_cell(row["source"]), row["stage"] or "", row["reason"],
            str(row["attempts"]), plain_cell(row["message"] or ""),
        )  # fmt: skip
    stdout.print(table)


@dlq.command("show")
@_OUT_OPTION
@click.argument("source")
def dlq_show(out_dir: Path, source: str) -> None:
    """Show everything recorded about one dead image, traceback included."""
    catalog = _open_catalog(out_dir)
    candidates = {source, _as_recorded(source)}
    with _using(catalog):
        rows = [row for row in catalog.dead_letters() if row["source"] in candidates]
    if not rows:
        stderr.print(f"[red]error:[/red] {source} is not in the dead-letter queue")
        sys.exit(ExitCode.USAGE)
    for name, value in rows[0].items():
        if name != "traceback":
            stdout.print(plain_cell(f"{name}: {value}"), highlight=False)
    stdout.print("traceback:", highlight=False)
    traceback = rows[0]["traceback"] or "(none recorded)"
    stdout.print(plain_cell(traceback, keep_newlines=True), highlight=False)


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
    setup_logging(0, quiet)
    catalog = _open_catalog(out_dir)
    with _using(catalog):
        dead = [row["source"] for row in catalog.dead_letters()]
        stored = catalog.last_config()
    if not dead:
        stdout.print("The dead-letter queue is empty; nothing to retry.")
        return
    try:
        if config_path is not None:
            config = load_config(config_path)
        else:
            config = parse_config(
                json.loads(stored or "{}"),
                source="stored configuration",
                stored=True,
            )
        # The catalog records text forms; undecodable file names need their bytes.
        request = RunRequest(
            inputs=[path_of_text(source) for source in dead],
            out_dir=out_dir,
            config=config,
            mode=mode,
            workers=workers,
        )
        sources, issues = collect_sources(request)
        with locked(out_dir):
            summary = execute_with_progress(request, sources, issues, quiet=quiet)
    except (ConfigError, UsageError) as exc:
        stderr.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(ExitCode.USAGE)
    if not quiet:
        print_summary(summary, out_dir)
        if issues:
            # They were never run, so their entries keep the earlier failure.
            stdout.print(
                f"{plural(len(issues), 'dead image')} could not be read, so the "
                "queue keeps the earlier failure. Retry once the files are back, "
                f"or remove the entries with `imgflow dlq purge --out {out_dir}`.",
                highlight=False,
            )
    sys.exit(ExitCode.OK if summary.all_done else ExitCode.SOME_IMAGES_NOT_DONE)


def _as_recorded(source: str) -> str:
    """Return a path as the catalog records it: absolute, in display form."""
    return display_path(os.path.abspath(source))


@dlq.command("purge")
@_OUT_OPTION
@click.argument("sources", nargs=-1)
def dlq_purge(out_dir: Path, sources: tuple[str, ...]) -> None:
    """Drop SOURCES (or every dead image) from the queue and the catalog.

    A named source that is not in the queue is reported, the others are
    dropped, and the command exits with status 2, as `dlq show` does.
    """
    catalog = _open_catalog(out_dir)
    with _using(catalog):
        dead = {row["source"] for row in catalog.dead_letters()}
        recorded = {
            source: source if source in dead else _as_recorded(source)
            for source in sources
        }
        chosen = sorted(dead if not sources else set(recorded.values()) & dead)
        unknown = sorted(
            source for source, path in recorded.items() if path not in dead
        )
        catalog.purge(chosen)
    stdout.print(f"Purged {plural(len(chosen), 'dead image')}.", highlight=False)
    for source in unknown:
        print_error(f"{source} is not in the dead-letter queue")
    if unknown:
        sys.exit(ExitCode.USAGE)
