"""Summary statistics shared by run reports, profiles and comparisons."""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], quantile: float) -> float | None:
    """Return the nearest-rank percentile of `values`, or None when empty.

    `quantile` is a fraction (0.95 for p95). Nearest rank returns a value
    that occurred, so a p99 of a small sample is its largest value.
    """
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be within [0, 1], got {quantile}")
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(quantile * len(ordered)))
    return ordered[rank - 1]


def percentiles(values: Iterable[float]) -> dict[str, float | None]:
    """Return p50, p95 and p99 of `values` under the keys used in reports."""
    ordered = sorted(values)
    return {
        "p50": percentile(ordered, 0.50),
        "p95": percentile(ordered, 0.95),
        "p99": percentile(ordered, 0.99),
    }
