"""Catalog backends: where the outcome of every image is recorded."""

from imgflow.catalog.base import Catalog, RunInfo
from imgflow.catalog.sqlite import SQLiteCatalog

__all__ = ["Catalog", "RunInfo", "SQLiteCatalog"]
