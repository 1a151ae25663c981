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
