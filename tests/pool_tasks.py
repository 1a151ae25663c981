"""Task functions for pool tests; importable by spawned worker processes."""

from __future__ import annotations

import os
import time


def behave(argument: tuple[str, float]) -> str:
    """Return, crash, raise or hang, as the argument requests."""
    action, value = argument
    if action == "exit":
        os._exit(int(value))
    if action == "raise":
        raise ValueError(f"asked to raise {value}")
    if action == "sleep":
        time.sleep(value)
    return f"{action}:{value}"


# Set by a parent before it forks workers: a forked worker inherits the value,
# a spawned one, which imports this module afresh, does not.
origin = "imported"


def report_origin(_argument: object) -> tuple[str, int]:
    """Return how this worker came to be and its process id."""
    return origin, os.getpid()
