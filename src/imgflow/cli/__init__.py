"""The `imgflow` command line: one module per command or command group."""

from imgflow.cli import compare, dlq, profile, recommend, run, setup
from imgflow.cli.app import main

__all__ = ["main", "compare", "dlq", "profile", "recommend", "run", "setup"]
