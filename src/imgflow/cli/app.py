"""The `imgflow` command group and what its commands share."""

from __future__ import annotations

import importlib
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from imgflow.errors import ExitCode
from imgflow.telemetry.logs import (
    FORMATS,
    LogFormat,
    configure_logging,
    current_log_settings,
    escape_controls,
)

log = logging.getLogger(__name__)

# pydantic scans every installed package's metadata for plugins when it
# first validates, which took 48 ms on a 2-core machine. The command uses no
# plugins. A value the user set wins.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text


class _ConsoleOnFirstUse:
    """A Rich console that is created, and Rich imported, on first use.

    Importing Rich costs about 15 ms, which a quiet run that prints nothing
    would otherwise spend before its first image.
    """

    def __init__(self, **options: Any) -> None:
        object.__setattr__(self, "_options", options)
        object.__setattr__(self, "_console", None)

    def _made(self) -> Console:
        console = object.__getattribute__(self, "_console")
        if console is None:
            from rich.console import Console

            console = Console(**object.__getattribute__(self, "_options"))
            object.__setattr__(self, "_console", console)
        return cast("Console", console)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._made(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._made(), name, value)

    # Rich's live display enters its console as a context manager, and
    # special methods are looked up on the type, never through __getattr__.
    def __enter__(self) -> Console:
        return self._made().__enter__()

    def __exit__(self, *exc_info: Any) -> None:
        self._made().__exit__(*exc_info)


stderr = cast("Console", _ConsoleOnFirstUse(stderr=True))
stdout = cast("Console", _ConsoleOnFirstUse())


def print_error(message: str) -> None:
    """Report a failure that ends the command.

    With JSON logs it is one more JSON record on stderr, so the stream
    stays parseable; otherwise it is one unwrapped line.
    """
    settings = current_log_settings()
    if settings is not None and settings.format == "json":
        log.error(message, extra={"event": "command_failed"})
        return
    from rich.markup import escape

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


class FiniteFloat(click.FloatRange):
    """A float option in a range that also rejects NaN and infinities.

    Every comparison with NaN is false, so a plain range lets it through.
    """

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class LazyGroup(click.Group):
    """A command group that imports a command's module only when it is used.

    `imgflow run` then loads neither the advisor nor its charts, which
    keeps start-up short on every run.
    """

    def __init__(
        self, *args: Any, lazy_commands: dict[str, str], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        # Command name -> "module:attribute" of its click command.
        self.lazy_commands = lazy_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, exiting with status 130 on an early Ctrl-C.

        Commands handle stop requests once their work starts. A Ctrl-C
        before that, while inputs are listed for example, would otherwise
        end in click's "Aborted!" and status 1.
        """
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            print_error("interrupted")
            ctx.exit(ExitCode.INTERRUPTED)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.lazy_commands.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, attribute = target.split(":")
        command: click.Command = getattr(
            importlib.import_module(module_name), attribute
        )
        return command


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    lazy_commands={
        "run": "imgflow.cli.run:run",
        "dlq": "imgflow.cli.dlq:dlq",
        "init": "imgflow.cli.setup:init",
        "samples": "imgflow.cli.setup:samples",
        "profile": "imgflow.cli.profile:profile",
        "compare": "imgflow.cli.compare:compare",
        "recommend": "imgflow.cli.recommend:recommend",
    },
)
@click.version_option(package_name="imgflow")
def main() -> None:
    """imgflow: run one image pipeline under the execution model that fits."""


def plain_cell(text: str, *, keep_newlines: bool = False) -> Text:
    """Return `text` for the terminal: no markup, control characters escaped.

    File names may contain escape sequences or brackets that would
    otherwise drive the terminal or read as Rich markup.
    """
    from rich.text import Text

    return Text(escape_controls(text, keep_newlines=keep_newlines))


def plural(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
