"""Amounts are integers in the asset's minor unit; decimal text only at the edges."""

from __future__ import annotations

import re

# fullmatch, not match with "$": "$" also matches before a trailing newline ("1\n").
_DECIMAL = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]+)?")


def format_units(amount: int, decimals: int) -> str:
    """1234500 with 6 decimals -> '1.2345' (exact; trailing zeros dropped)."""
    if decimals < 0:
        raise ValueError("decimals must be >= 0")
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**decimals)
    if decimals == 0 or frac == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{str(frac).rjust(decimals, '0').rstrip('0')}"


def parse_units(text: str, decimals: int) -> int:
    """'1.2345' with 6 decimals -> 1234500. More decimals than the asset has is an error."""
    if not _DECIMAL.fullmatch(text):
        raise ValueError(f"not a plain non-negative decimal: {text!r}")
    whole, _, frac = text.partition(".")
    if len(frac) > decimals:
        raise ValueError(f"{text!r} has more than {decimals} decimals")
    scaled: int = int(whole) * 10**decimals + int(frac.ljust(decimals, "0") or "0")
    return scaled
