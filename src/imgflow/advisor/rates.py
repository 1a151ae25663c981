"""Arrival rates written as COUNT/UNIT, such as `50/day` or `10000/min`."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

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

_RATE = re.compile(r"^\s*(?P<count>[^/\s]+)\s*/\s*(?P<unit>[a-z]+)\s*$")
# A decimal number, with `,` or `_` between digit groups and an optional
# exponent (1e3).
_COUNT = re.compile(r"^[+-]?([0-9][0-9_,]*(\.[0-9]*)?|\.[0-9]+)(e[+-]?[0-9]+)?$")

EXAMPLES = "50/day, 1200/hour, 10000/min or 3/s"


@dataclass(frozen=True, slots=True)
class Rate:
    """An arrival rate as written on the command line."""

    count: float
    unit: str  # one of SECONDS_PER_UNIT
    # The rate as the user wrote it, for messages; empty when built in code.
    text: str = field(default="", compare=False)

    @property
    def per_second(self) -> float:
        return self.count / SECONDS_PER_UNIT[self.unit]

    @property
    def is_daily_total(self) -> bool:
        """Whether the rate counts a whole day, so it is a volume, not a peak."""
        return self.unit == "day"

    def __str__(self) -> str:
        return f"{self.count:g}/{self.unit}"

    @property
    def as_written(self) -> str:
        """The rate as the user wrote it, or in canonical form."""
        return self.text.strip() or str(self)


def parse_rate(text: str) -> Rate:
    """Parse COUNT/UNIT into a Rate; raise UsageError naming the value.

    COUNT is a decimal number greater than 0, which may use `,` or `_`
    between digit groups (`10,000/min`) and an exponent (`1e4/min`). UNIT
    is s, min, hour or day, or a spelling in UNIT_ALIASES.
    """
    match = _RATE.match(text.lower())
    if match is None:
        raise UsageError(
            f"invalid rate {text!r}: expected COUNT/UNIT, for example {EXAMPLES}"
        )
    if _COUNT.match(match["count"]) is None:
        problem = (
            "must be a finite number"
            if _is_non_finite(match["count"])
            else f"{match['count']!r} is not a number"
        )
        raise UsageError(
            f"invalid rate {text!r}: the count {problem}, for example {EXAMPLES}"
        )
    unit = UNIT_ALIASES.get(match["unit"])
    if unit is None:
        raise UsageError(
            f"invalid rate {text!r}: unknown unit {match['unit']!r}; "
            f"use s, min, hour or day, for example {EXAMPLES}"
        )
    count = float(match["count"].replace(",", "").replace("_", ""))
    if not math.isfinite(count):
        raise UsageError(
            f"invalid rate {text!r}: the count must be a finite number, "
            f"for example {EXAMPLES}"
        )
    if count <= 0:
        raise UsageError(
            f"invalid rate {text!r}: the count must be greater than 0, "
            f"for example {EXAMPLES}"
        )
    return Rate(count, unit, text)


def _is_non_finite(count: str) -> bool:
    """Return whether `count` spells infinity or NaN, as float() reads them."""
    try:
        return not math.isfinite(float(count))
    except ValueError:
        return False


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
