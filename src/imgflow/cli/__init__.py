"""The `imgflow` command line: one module per command or command group.

Command modules are imported when their command runs (see `LazyGroup`).
"""

from imgflow.cli.app import main

__all__ = ["main"]
