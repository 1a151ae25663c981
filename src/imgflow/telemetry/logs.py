"""Log set-up for the command line and for the worker processes it starts.

Library modules only create loggers (`logging.getLogger(__name__)`); the
handlers are installed here, by the CLI. Every record carries the process
id and the worker name (`main` in the coordinating process, the process
name such as `imgflow-render-2` in a worker). Records may carry event
fields passed as `extra`, which the JSON format writes as keys. Repeats of
one message are rate-limited and credentials in URLs are masked.

Spawned workers do not inherit handlers, so a pool passes the settings of
the coordinating process (`current_log_settings`) to each worker, which
installs the same format on its own stderr.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import sys
import threading
import time
import unicodedata
from dataclasses import dataclass
from typing import IO, Any, Literal

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")

# At most this many records with the same logger, level and message
# template pass per window. The first one after the window reports how
# many were dropped.
REPEAT_LIMIT = 5
REPEAT_WINDOW_SECONDS = 60.0

# user:password@ in a URL, and password=... or secret=... style pairs.
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):[^@\s]+@", re.I
)
_SECRET_PAIR = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|secret|token|api_key)\s*[=:]\s*)[^\s,;&]+",
    re.I,
)

_JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(process)d %(worker)s"


@dataclass(frozen=True, slots=True)
class LogSettings:
    """The CLI's logging configuration, in a form a worker process can copy."""

    format: LogFormat
    level: int
    pyvips_level: int


_settings: LogSettings | None = None


def current_log_settings() -> LogSettings | None:
    """Return the settings installed by `configure_logging`, or None."""
    return _settings


def redact(text: str) -> str:
    """Mask passwords in URLs and in key=value pairs."""
    text = _URL_CREDENTIALS.sub(r"\g<scheme>\g<user>:***@", text)
    return _SECRET_PAIR.sub(r"\g<key>***", text)


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    """Write control characters, such as a terminal's escape, as \\xNN."""
    allowed = "\n\t" if keep_newlines else ""
    return "".join(
        f"\\x{ord(char):02x}"
        if unicodedata.category(char) == "Cc" and char not in allowed
        else char
        for char in text
    )


def worker_name() -> str:
    """Return the name logs use for this process."""
    process = multiprocessing.current_process()
    return "main" if process.name == "MainProcess" else process.name


# Attributes every record has; the others came from a call's `extra`.
_STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__
) | {"message", "asctime", "worker"}


def _redact_field(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return [_redact_field(item) for item in value]
    return value


def _escape_argument(value: Any) -> Any:
    """Return a log argument with its control characters escaped, newlines too."""
    text = os.fspath(value) if isinstance(value, os.PathLike) else value
    if isinstance(text, str):
        escaped = escape_controls(text)
        if escaped != text:
            return escaped
    return value


class ContextFilter(logging.Filter):
    """Add the worker name to every record and mask secrets in its text.

    Masks the message and the text of event fields, such as the `source`
    path of an image, which JSON logs write out as they are.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = worker_name()
        if isinstance(record.args, tuple):
            # A newline in an argument, such as a file name, would start what
            # looks like another log line, so arguments keep none.
            record.args = tuple(_escape_argument(value) for value in record.args)
        message = record.getMessage()
        # A file name in a message must not drive the terminal it reaches.
        masked = escape_controls(redact(message), keep_newlines=True)
        if masked != message:
            record.msg, record.args = masked, None
        for name, value in list(record.__dict__.items()):
            if name not in _STANDARD_ATTRIBUTES:
                setattr(record, name, _redact_field(value))
        return True


class RepeatFilter(logging.Filter):
    """Let at most `limit` records of one kind through per `window` seconds.

    A kind is a logger, a level and a message template, so the same warning
    about a thousand different files counts as one kind. Errors and event
    records (those with an `event` field, such as the line per image that
    `-v` turns on) always pass.
    """

    def __init__(
        self, limit: int = REPEAT_LIMIT, window: float = REPEAT_WINDOW_SECONDS
    ) -> None:
        super().__init__()
        self.limit = limit
        self.window = window
        self._lock = threading.Lock()
        # kind -> [window start, records in window, records dropped]
        self._kinds: dict[tuple[str, int, str], list[Any]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR or hasattr(record, "event"):
            return True
        kind = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        with self._lock:
            state = self._kinds.setdefault(kind, [now, 0, 0])
            if now - state[0] >= self.window:
                dropped = state[2]
                state[:] = [now, 0, 0]
                if dropped:
                    record.msg = (
                        f"{record.getMessage()} ({dropped} similar messages suppressed)"
                    )
                    record.args = None
                    record.suppressed = dropped
            state[1] += 1
            if state[1] > self.limit:
                state[2] += 1
                return False
            if state[1] == self.limit:
                record.msg = (
                    f"{record.getMessage()} (further messages like this are "
                    f"suppressed for {self.window:.0f} s)"
                )
                record.args = None
        return True


def _json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(
        _JSON_FIELDS,
        rename_fields={
            "asctime": "time",
            "levelname": "level",
            "name": "logger",
            "process": "pid",
        },
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )


class _RichOnFirstRecord(logging.Handler):
    """Write records through Rich, imported when the first record arrives.

    A quiet run that logs nothing then never imports Rich, which costs
    about 15 ms before its first image.
    """

    def __init__(self, console: Any) -> None:
        super().__init__()
        self.console = console
        self._rich: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self._rich is None:
            from rich.logging import RichHandler

            self._rich = RichHandler(
                console=self.console,
                show_path=False,
                rich_tracebacks=False,
                log_time_format="%Y-%m-%d %H:%M:%S",
            )
            self._rich.setFormatter(
                logging.Formatter("%(message)s [pid %(process)d %(worker)s]")
            )
        self._rich.emit(record)


def _handler(
    settings: LogSettings, stream: IO[str], console: Any | None
) -> logging.Handler:
    handler: logging.Handler
    if settings.format == "json":
        handler = logging.StreamHandler(stream)
        handler.setFormatter(_json_formatter())
    elif console is not None:
        handler = _RichOnFirstRecord(console)
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)-7s %(message)s [pid %(process)d %(worker)s]"
            )
        )
    handler.addFilter(ContextFilter())
    handler.addFilter(RepeatFilter())
    return handler


def _install(settings: LogSettings, stream: IO[str], console: Any | None) -> None:
    logging.basicConfig(
        level=settings.level, handlers=[_handler(settings, stream, console)], force=True
    )
    logging.getLogger("pyvips").setLevel(settings.pyvips_level)
    # Font cache notices from the charts of HTML reports, and Pillow's dump
    # of every EXIF tag it parses, which drowns imgflow's own debug lines.
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    logging.getLogger("PIL").setLevel(max(settings.level, logging.INFO))


def configure_logging(
    *,
    verbosity: int = 0,
    quiet: bool = False,
    log_format: LogFormat = "text",
    console: Any | None = None,
    stream: IO[str] | None = None,
) -> LogSettings:
    """Install the handler for this process and remember it for workers.

    `verbosity` 0 logs warnings, 1 info (one line per image), 2 debug;
    `quiet` logs errors only. JSON logs start at info, because they replace
    the summary table and the list of problems that text output prints.
    Text goes through `console` (a Rich console) when given; JSON is one
    object per line on `stream` (stderr).
    """
    global _settings
    level = logging.INFO if log_format == "json" else logging.WARNING
    if quiet:
        level = logging.ERROR
    elif verbosity == 1:
        level = logging.INFO
    elif verbosity >= 2:
        level = logging.DEBUG
    # libvips reports recoverable damage (extraneous bytes, a bad tile) as
    # warnings; per image they are noise unless debugging.
    pyvips_level = logging.WARNING if verbosity >= 2 else logging.ERROR
    _settings = LogSettings(log_format, level, pyvips_level)
    _install(_settings, stream or sys.stderr, console)
    return _settings


def configure_worker_logging(settings: LogSettings) -> None:
    """Install the coordinating process's log format in a worker process."""
    global _settings
    _settings = settings
    _install(settings, sys.stderr, None)
