"""The `imgflow` command group and what its commands share."""

from __future__ import annotations

import logging

import click
from rich.console import Console
from rich.logging import RichHandler

log = logging.getLogger(__name__)

stderr = Console(stderr=True)
stdout = Console()


def setup_logging(verbosity: int, quiet: bool) -> None:
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


def plural(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
