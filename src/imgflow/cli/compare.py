"""`imgflow compare`: run a sample under each execution model, side by side."""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import click
from rich.table import Table

from imgflow.advisor.compare import (
    INTERRUPTED_NOTE,
    TABLE_HEADERS,
    Comparison,
    ComparisonInterrupted,
    Measurement,
    RunLost,
    html_page,
    make_rows,
    method_notes,
    plan_setups,
    run_rounds,
    table_rows,
    unfinished_images,
)
from imgflow.cli.app import CONFIG_OPTION, plural, setup_logging, stderr, stdout
from imgflow.cli.profile import collect_sample
from imgflow.config import load_config
from imgflow.errors import ConfigError, ExitCode, UsageError
from imgflow.executors import MODES
from imgflow.executors.parallel import default_workers
from imgflow.outdir import check_output_file, write_output_file


def _default_workers() -> str:
    return ",".join(str(count) for count in sorted({1, default_workers()}))


def _parse_modes(
    _context: click.Context, _parameter: click.Parameter, value: str
) -> list[str]:
    modes = [part.strip() for part in value.split(",") if part.strip()]
    if not modes:
        raise click.BadParameter(f"name at least one of {', '.join(MODES)}")
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown:
        raise click.BadParameter(
            f"unknown mode {', '.join(unknown)}; expected a comma-separated "
            f"list of {', '.join(MODES)}"
        )
    return list(dict.fromkeys(modes))


def _parse_workers(
    _context: click.Context, _parameter: click.Parameter, value: str
) -> list[int]:
    counts: list[int] = []
    for part in value.split(","):
        text = part.strip()
        if not text.isdigit() or int(text) < 1:
            raise click.BadParameter(
                f"{part!r} is not a worker count; expected a comma-separated list "
                "of whole numbers of at least 1, such as 1,2"
            )
        counts.append(int(text))
    return sorted(set(counts))


def _print_progress(measurement: Measurement, position: int, total: int) -> None:
    line = (
        f"[{position}/{total}] {measurement.setup.label}: "
        f"{measurement.images_per_second:.2f} images/s, "
        f"peak RSS {measurement.usage.peak_rss_bytes / 1e6:.0f} MB"
    )
    if measurement.processed < measurement.images:
        line += f", {measurement.processed} of {measurement.images} images done"
    stderr.print(line, highlight=False)


def _table(comparison: Comparison) -> Table:
    table = Table(title="imgflow compare", title_justify="left")
    for index, header in enumerate(TABLE_HEADERS):
        if index == 0:
            table.add_column(header, no_wrap=True)
        else:
            table.add_column(header, justify="right")
    for row in table_rows(comparison):
        table.add_row(*row)
    rounds = comparison.rounds
    table.caption = f"{plural(comparison.files, 'file')}; " + (
        f"medians of {rounds} rounds" if rounds > 1 else "one round"
    )
    return table


@click.command()
@click.argument("inputs", nargs=-1)
@CONFIG_OPTION
@click.option(
    "--modes",
    default=",".join(MODES),
    show_default=True,
    callback=_parse_modes,
    help="Comma-separated execution models to compare.",
)
@click.option(
    "--workers",
    default=_default_workers,
    show_default="1 and the number of usable cores",
    callback=_parse_workers,
    help="Comma-separated worker counts for each model but sequential, which runs once with 1.",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Run every setup this many times, in rotating order, and report medians.",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(path_type=Path),
    help="Write a self-contained HTML page with charts to this file.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path),
    help="Write the measurements as JSON to this file, for scripts.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only errors.")
@click.option(
    "-v", "--verbose", count=True, help="More log output (-v info, -vv debug)."
)
def compare(
    inputs: tuple[str, ...],
    config_path: Path | None,
    modes: list[str],
    workers: list[int],
    rounds: int,
    html_path: Path | None,
    json_path: Path | None,
    quiet: bool,
    verbose: int,
) -> None:
    """Run the sample in INPUTS under each execution model and compare them.

    Every run processes the whole sample into its own scratch folder, which
    is removed afterwards, and reports throughput, seconds per image (p50,
    p95, p99), peak memory of the process tree and CPU use. Sequential runs
    once, with one worker; every other mode runs with each --workers count.

    Exit status: 0 when every run processed every image, 1 when a run
    rejected, failed or lost images (the comparison is still printed), 2
    for a usage or configuration error, 130 when interrupted.
    """
    setup_logging(verbose, quiet)
    with tempfile.TemporaryDirectory(prefix="imgflow-compare-") as scratch:
        comparison = _compare(
            inputs, config_path, modes, workers, rounds, html_path, json_path,
            Path(scratch), quiet,
        )  # fmt: skip
    if not quiet:
        stdout.print(_table(comparison))
        stdout.print(comparison.speed.sentence, highlight=False)
        stdout.print(comparison.memory.sentence, highlight=False)
        if comparison.interrupted:
            stdout.print(INTERRUPTED_NOTE, highlight=False)
        if verbose:
            for note in method_notes(rounds):
                stdout.print(f"- {note}", highlight=False)
    if comparison.interrupted:
        sys.exit(ExitCode.INTERRUPTED)
    not_done = unfinished_images([run for row in comparison.rows for run in row.runs])
    if not_done:
        stderr.print(
            f"[yellow]{plural(not_done, 'image')} did not finish in at least one "
            "run; `imgflow run` on the sample lists why.[/yellow]",
            highlight=False,
        )
        sys.exit(ExitCode.SOME_IMAGES_NOT_DONE)


def _compare(
    inputs: tuple[str, ...],
    config_path: Path | None,
    modes: Sequence[str],
    workers: Sequence[int],
    rounds: int,
    html_path: Path | None,
    json_path: Path | None,
    scratch: Path,
    quiet: bool,
) -> Comparison:
    """Measure every setup and write the requested files, or exit with an error.

    A stop signal ends the measuring. The runs finished by then still make
    a comparison, marked as interrupted, and the command exits with 130 if
    there are none.
    """
    try:
        config = load_config(config_path)
        for option, path in (("--html", html_path), ("--json", json_path)):
            if path is not None:
                check_output_file(path, option)
        sources = collect_sample(inputs, config, scratch)
    except (ConfigError, UsageError) as exc:
        stderr.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(ExitCode.USAGE)
    setups = plan_setups(modes, workers)
    if not quiet:
        stderr.print(
            f"Comparing {plural(len(setups), 'setup')} on "
            f"{plural(len(sources), 'file')}, {plural(rounds, 'round')}...",
            highlight=False,
        )
    interrupted = False
    try:
        measurements = run_rounds(
            setups,
            sources,
            config,
            scratch,
            inputs=inputs,
            rounds=rounds,
            on_measured=None if quiet else _print_progress,
        )
    except ComparisonInterrupted as exc:
        stderr.print(f"[yellow]interrupted:[/yellow] {exc}", highlight=False)
        if not exc.measurements:
            if json_path is not None or html_path is not None:
                stderr.print(
                    "No run finished, so no --json or --html file was written.",
                    highlight=False,
                )
            sys.exit(ExitCode.INTERRUPTED)
        measurements, interrupted = exc.measurements, True
    except RunLost as exc:
        stderr.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(ExitCode.SOME_IMAGES_NOT_DONE)
    comparison = Comparison(
        rows=make_rows(setups, measurements),
        rounds=rounds,
        files=len(sources),
        config_sha256=config.digest(),
        interrupted=interrupted,
    )
    try:
        if json_path is not None:
            text = json.dumps(comparison.to_json(), indent=2) + "\n"
            write_output_file(json_path, text.encode(), "--json")
        if html_path is not None:
            html_page(comparison).write(html_path, "--html")
    except UsageError as exc:
        stderr.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(ExitCode.USAGE)
    return comparison
