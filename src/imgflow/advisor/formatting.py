"""Numbers as the advisor writes them: bytes, seconds, shares and counts."""

from __future__ import annotations


def format_bytes(count: float) -> str:
    """Write a byte count in decimal units (kB to TB), as --memory-limit takes them."""
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count / 10**3:.3g} kB"


def format_seconds(seconds: float) -> str:
    """Write a duration in s, or in ms below 10 ms, h from 2 h and days from 2 days."""
    if seconds >= 2 * 86_400:
        return f"{seconds / 86_400:,.1f} days"
    if seconds >= 7200:
        return f"{seconds / 3600:,.1f} h"
    if seconds >= 100:
        return f"{seconds:,.0f} s"
    if 0 < seconds < 0.01:
        return f"{seconds * 1000:.2g} ms"
    return f"{seconds:.3g} s"


def format_percent(share: float) -> str:
    """Write a share as a percentage with at least one significant digit."""
    if 0 < share < 0.01:
        return f"{share:.2%}"
    return f"{share:.1%}"


def count(number: int, noun: str) -> str:
    """Write a count and its noun, plural unless the count is 1."""
    return f"{number:,} {noun}{'' if number == 1 else 's'}"
