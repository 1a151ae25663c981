"""Arrival rates written as COUNT/UNIT, such as `50/day` or `10000/min`."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from imgflow.errors import UsageError

SECONDS_PER_UNIT = {"s": 1.0, "min": 60.0, "hour": 3600.0, "day": 86400.0}

# Spellings accepted for each canonical unit.
UNIT_ALIASES = {
    "s": "s",
    "sec": "s",
    "second": "s",
    "seconds": "s",
    "min": "min",
    "minute": "min",
    "minutes": "min",
    "h": "hour",
    "hr": "hour",
    "hour": "hour",
    "hours": "hour",
    "d": "day",
    "day": "day",
    "days": "day",
}

_RATE = re.compile(
    r"^\s*(?P<count>[0-9][0-9_,]*(\.[0-9]+)?)\s*/\s*(?P<unit>[a-z]+)\s*$"
)

EXAMPLES = "50/day, 1200/hour, 10000/min or 3/s"


@dataclass(frozen=True, slots=True)
class Rate:
    """An arrival rate as written on the command line."""

    count: float
    unit: str  # one of SECONDS_PER_UNIT

    @property
    def per_second(self) -> float:
        return self.count / SECONDS_PER_UNIT[self.unit]

    @property
    def is_daily_total(self) -> bool:
        """Whether the rate counts a whole day, so it is a volume, not a peak."""
        return self.unit == "day"

    def __str__(self) -> str:
        return f"{self.count:g}/{self.unit}"


def parse_rate(text: str) -> Rate:
    """Parse COUNT/UNIT into a Rate; raise UsageError naming the value.

    COUNT may use `,` or `_` between digit groups (`10,000/min`). UNIT is
    s, min, hour or day, or a spelling in UNIT_ALIASES.
    """
    match = _RATE.match(text.lower())
    if match is None:
        raise UsageError(
            f"invalid rate {text!r}: expected COUNT/UNIT, for example {EXAMPLES}"
        )
    unit = UNIT_ALIASES.get(match["unit"])
    if unit is None:
        raise UsageError(
            f"invalid rate {text!r}: unknown unit {match['unit']!r}; "
            f"use s, min, hour or day, for example {EXAMPLES}"
        )
    count = float(match["count"].replace(",", "").replace("_", ""))
    if count <= 0 or not math.isfinite(count):
        raise UsageError(
            f"invalid rate {text!r}: the count must be greater than 0, "
            f"for example {EXAMPLES}"
        )
    return Rate(count, unit)


def format_rate(per_second: float) -> str:
    """Write a rate per second in the unit that gives a readable count."""
    for unit in ("s", "min", "hour"):
        count = per_second * SECONDS_PER_UNIT[unit]
        if count >= 1:
            return f"{_format_count(count)}/{unit}"
    return f"{_format_count(per_second * SECONDS_PER_UNIT['day'])}/day"


def _format_count(count: float) -> str:
    if count >= 100:
        return f"{count:,.0f}"
    return f"{count:.3g}"
