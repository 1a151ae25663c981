"""The `imgflow` command group and what its commands share."""

from __future__ import annotations

import logging
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from imgflow.telemetry.logs import (
    FORMATS,
    LogFormat,
    configure_logging,
    current_log_settings,
)

log = logging.getLogger(__name__)

stderr = Console(stderr=True)
stdout = Console()


def print_error(message: str) -> None:
    """Report a failure that ends the command.

    With JSON logs it is one more JSON record on stderr, so the stream
    stays parseable; otherwise it is one unwrapped line.
    """
    settings = current_log_settings()
    if settings is not None and settings.format == "json":
        log.error(message, extra={"event": "command_failed"})
        return
    stderr.print(
        f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True
    )


def setup_logging(verbosity: int, quiet: bool, log_format: LogFormat = "text") -> None:
    """Install log handlers for this command and the workers it starts."""
    configure_logging(
        verbosity=verbosity,
        quiet=quiet,
        log_format=log_format,
        console=stderr if log_format == "text" else None,
    )


CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="TOML pipeline configuration (see `imgflow init`).",
)

LOG_FORMAT_OPTION = click.option(
    "--log-format",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="Log lines as text, or as one JSON object per line for log collectors.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="imgflow")
def main() -> None:
    """imgflow: run one image pipeline under the execution model that fits."""


def plural(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
