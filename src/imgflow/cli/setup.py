"""`imgflow init` and `imgflow samples`: files to start from."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from imgflow.cli.app import FiniteFloat, plural, print_error, stderr, stdout
from imgflow.config import starter_config
from imgflow.errors import ExitCode


@click.command()
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


@click.command()
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
    type=FiniteFloat(min=0.01, max=100),
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
@click.option(
    "--force", is_flag=True, help="Overwrite files in OUT_DIR with the same names."
)
def samples(
    out_dir: Path,
    count: int,
    megapixels: float,
    seed: int,
    progressive: bool,
    force: bool,
) -> None:
    """Generate realistic sample photos (JPEG with camera EXIF) into OUT_DIR.

    The photos are named IMG_0001.jpg onwards, as cameras name theirs, so
    an existing file of such a name stops the command unless --force is given.
    """
    try:
        from imgflow import samples as generator
    except ImportError as exc:
        stderr.print(
            f"[red]error:[/red] sample generation needs the 'samples' extra "
            f"(pip install 'imgflow[samples]'): {exc}"
        )
        sys.exit(ExitCode.USAGE)
    targets = [out_dir / generator.sample_name(n) for n in range(1, count + 1)]
    existing = [path for path in targets if os.path.lexists(path)]
    if existing and not force:
        more = len(existing) - 1
        print_error(
            f"{existing[0]} exists"
            + (f", and {more} more of the names to write" if more else "")
            + "; use --force to overwrite them, or name another folder"
        )
        sys.exit(ExitCode.USAGE)
    try:
        paths = generator.generate(
            out_dir, count, megapixels=megapixels, seed=seed, progressive=progressive
        )
    except OSError as exc:
        print_error(f"cannot write {exc.filename or out_dir}: {exc.strerror or exc}")
        sys.exit(ExitCode.USAGE)
    stdout.print(
        f"Wrote {plural(len(paths), 'sample photo')} to {out_dir}", highlight=False
    )
