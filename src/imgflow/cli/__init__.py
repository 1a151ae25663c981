"""The `imgflow` command line: one module per command or command group."""

from imgflow.cli import dlq, recommend, run, setup
from imgflow.cli.app import main

__all__ = ["main", "dlq", "recommend", "run", "setup"]
