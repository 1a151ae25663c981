"""`imgflow profile`: what a sample of images contains and what it costs."""

from __future__ import annotations

import contextlib
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import click
from rich.table import Table

from imgflow.advisor.profile import (
    DEFAULT_TIMED_IMAGES,
    EmptySampleError,
    Profile,
    ProfileInterrupted,
    Timed,
    make_profile,
    scan,
    spread,
    summarise_scan,
    summarise_timing,
    time_images,
    write_profile,
)
from imgflow.cli.app import CONFIG_OPTION, plural, setup_logging, stderr, stdout
from imgflow.config import PipelineConfig, load_config
from imgflow.errors import ConfigError, ExitCode, UsageError
from imgflow.outdir import check_output_file
from imgflow.records import Source
from imgflow.runner import RunRequest, collect_sources

MEGABYTE = 1e6
# Exit status of a command stopped by SIGINT, as shells report it.


def collect_sample(
    inputs: tuple[str, ...], config: PipelineConfig, scratch: Path
) -> list[Source]:
    """List the sample's files as `imgflow run` would, or raise UsageError.

    Files under `scratch`, the folder that takes the command's outputs, are
    not listed. Inputs that cannot be listed are logged as warnings, and the
    command goes on with the rest unless nothing is left.
    """
    if not inputs:
        raise UsageError("no input given: name the sample's folders or files")
    request = RunRequest(inputs=inputs, out_dir=scratch, config=config)
    sources, issues = collect_sources(request)
    if not sources:
        details = "; ".join(f"{issue.path}: {issue.message}" for issue in issues[:5])
        raise UsageError(f"no images found: {details or 'the inputs are empty'}")
    return sources


def _counts(table: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in table.items()) or "none"


def _sample_table(profile: Profile) -> Table:
    sample = profile.sample
    table = Table(title="Sample", title_justify="left", show_header=False)
    table.add_column("fact")
    table.add_column("value", overflow="fold")
    rows = [
        ("files", str(sample.files)),
        ("images", str(sample.images)),
        ("rejected", f"{sample.rejected} ({_counts(sample.rejections)})"),
        ("formats", _counts(sample.formats)),
        ("progressive JPEG", str(sample.progressive)),
        ("animated", str(sample.animated)),
        ("with EXIF", str(sample.with_exif)),
        ("colour modes", _counts(sample.colour_modes)),
        ("bit depths", _counts(sample.bit_depths)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _size_table(profile: Profile) -> Table:
    sample = profile.sample
    table = Table(title="Sizes", title_justify="left")
    for column in ("", "min", "p50", "p95", "max", "mean"):
        table.add_column(column, justify="right")
    sizes = sample.bytes
    table.add_row(
        "MB",
        *(
            f"{value / MEGABYTE:.2f}"
            for value in (sizes.min, sizes.p50, sizes.p95, sizes.max, sizes.mean)
        ),
    )
    pixels = sample.megapixels
    table.add_row(
        "megapixels",
        *(
            f"{value:.2f}"
            for value in (pixels.min, pixels.p50, pixels.p95, pixels.max, pixels.mean)
        ),
    )
    return table


def _timing_table(profile: Profile) -> Table:
    timing = profile.timing
    table = Table(
        title=f"Seconds per image, sequential, {plural(timing.images_timed, 'image')} timed",
        title_justify="left",
    )
    for column in ("", "mean", "p50", "p95", "p99", "max"):
        table.add_column(column, justify="right")
    total = timing.seconds_per_image
    table.add_row(
        "whole image",
        *(f"{v:.3f}" for v in (total.mean, total.p50, total.p95, total.p99, total.max)),
    )
    for stage, summary in timing.stages.items():
        table.add_row(
            stage,
            f"{summary.mean:.3f}",
            f"{summary.p50:.3f}",
            f"{summary.p95:.3f}",
            "",
            "",
        )
    table.caption = (
        f"{timing.seconds_per_megapixel:.3f} s per megapixel; "
        f"peak RSS {timing.peak_rss_bytes / MEGABYTE:.0f} MB"
    )
    return table


def _warn_unfinished(timed: Timed) -> None:
    unfinished = timed.unfinished
    if not unfinished:
        return
    verb = "is" if len(unfinished) == 1 else "are"
    stderr.print(
        f"[yellow]{plural(len(unfinished), 'timed image')} did not finish the "
        f"pipeline and {verb} left out of the timing:[/yellow]",
        highlight=False,
    )
    for result in unfinished:
        reason = result.reason.value if result.reason else "-"
        stderr.print(
            f"  {result.source.text}: {result.status.value}, {reason} ({result.message})",
            highlight=False,
        )


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Turn SIGINT and SIGTERM into a stop request, checked between images.

    The handler only sets `stop`: a KeyboardInterrupt raised while libvips
    works would land in a pyvips callback, where cffi discards it.
    """

    def handle(signum: int, _frame: object) -> None:
        if not stop.is_set():
            stderr.print(
                f"[yellow]{signal.Signals(signum).name}: stopping after the image "
                "in progress[/yellow]",
                highlight=False,
            )
        stop.set()

    try:
        previous = {
            sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)
        }
    except ValueError:  # Not the main thread: signals cannot be handled here.
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _profile(
    inputs: tuple[str, ...],
    config_path: Path | None,
    json_path: Path | None,
    timed_count: int,
    scratch: Path,
    quiet: bool,
    stop: threading.Event,
) -> Profile:
    """Scan and time the sample, write the JSON, or exit with an error.

    Raises ProfileInterrupted when `stop` is set before the profile is
    written.
    """
    try:
        config = load_config(config_path)
        if json_path is not None:
            check_output_file(json_path, "--json")
        sources = collect_sample(inputs, config, scratch)
    except (ConfigError, UsageError) as exc:
        stderr.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(ExitCode.USAGE)
    try:
        scanned = scan(sources, config, stop)
        sample = summarise_scan(scanned)
        if not quiet:
            stderr.print(
                f"Scanned {plural(scanned.files, 'file')}; timing "
                f"{plural(min(timed_count, sample.images), 'image')}...",
                highlight=False,
            )
        timed = time_images(spread(scanned.images, timed_count), config, scratch, stop)
        _warn_unfinished(timed)
        result = make_profile(config, sample, summarise_timing(timed))
    except EmptySampleError as exc:
        stderr.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(ExitCode.SOME_IMAGES_NOT_DONE)
    if stop.is_set():
        raise ProfileInterrupted("stopped after the timing")
    if json_path is not None:
        try:
            write_profile(result, json_path)
        except UsageError as exc:
            stderr.print(f"[red]error:[/red] {exc}", highlight=False)
            sys.exit(ExitCode.USAGE)
    return result


@click.command()
@click.argument("inputs", nargs=-1)
@CONFIG_OPTION
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path),
    help="Write the profile as JSON to this file (read by `imgflow recommend`).",
)
@click.option(
    "--time",
    "timed_count",
    type=click.IntRange(min=1),
    default=DEFAULT_TIMED_IMAGES,
    show_default=True,
    metavar="N",
    help="Number of images to run through the whole pipeline for timing.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only errors.")
@click.option(
    "-v", "--verbose", count=True, help="More log output (-v info, -vv debug)."
)
def profile(
    inputs: tuple[str, ...],
    config_path: Path | None,
    json_path: Path | None,
    timed_count: int,
    quiet: bool,
    verbose: int,
) -> None:
    """Profile a sample of images from INPUTS (folders or files).

    Every file's header is read (no pixels are decoded) to count formats,
    sizes, progressive and animated images, EXIF, colour modes, bit depths
    and rejections. Then N images spread over the size range run through the
    whole pipeline in this process, one at a time, to time each stage. Their
    outputs go to a scratch folder that is removed afterwards.

    Exit status: 0 when the profile was made, 1 when no image could be
    measured, 2 for a usage or configuration error, 130 when interrupted
    by Ctrl-C or SIGTERM (after the image in progress).
    """
    setup_logging(verbose, quiet)
    stop = threading.Event()
    try:
        # The handlers stay installed until the scratch folder is removed, so
        # that a signal cannot cut its removal short.
        with (
            _stop_on_signals(stop),
            tempfile.TemporaryDirectory(prefix="imgflow-profile-") as scratch,
        ):
            result = _profile(
                inputs, config_path, json_path, timed_count, Path(scratch), quiet, stop
            )
    except ProfileInterrupted as exc:
        stderr.print(
            f"[yellow]interrupted:[/yellow] {exc}. No profile was written, and "
            "the scratch folder was removed.",
            highlight=False,
        )
        sys.exit(ExitCode.INTERRUPTED)

    if not quiet:
        stdout.print(_sample_table(result))
        stdout.print(_size_table(result))
        stdout.print(_timing_table(result))
        if json_path is not None:
            stdout.print(f"Profile written to {json_path}", highlight=False)
