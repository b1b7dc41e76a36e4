"""Exact big-integer checks for SQLite, which has no integer wider than 64 bits.

SQLite stores ledger amounts as canonical decimal text; these deterministic SQL
functions let its CHECK constraints compare them exactly (wei overflow int64 at
9.2 ETH). Every connection that writes the ledger registers them: a connection
without them cannot write the ledger tables at all ("unknown function").
"""

from __future__ import annotations

import re
import sqlite3

_CANONICAL = re.compile(r"0|[1-9][0-9]{0,77}")


def amount_ok(value: object) -> int:
    """1 if `value` is a canonical non-negative decimal integer string."""
    return int(isinstance(value, str) and _CANONICAL.fullmatch(value) is not None)


def covers(credits_posted: str, debits_posted: str, debits_pending: str) -> int:
    """1 if posted credits cover posted plus pending debits."""
    return int(int(credits_posted) >= int(debits_posted) + int(debits_pending))


def positive(value: str) -> int:
    return int(amount_ok(value) == 1 and value != "0")


def register(conn: sqlite3.Connection) -> None:
    conn.create_function("ledger_amount_ok", 1, amount_ok, deterministic=True)
    conn.create_function("ledger_covers", 3, covers, deterministic=True)
    conn.create_function("ledger_positive", 1, positive, deterministic=True)
