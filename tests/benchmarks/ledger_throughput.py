"""Ledger throughput on PostgreSQL (the stack's), SQLite, and the in-memory fake (the
engine alone, no storage: the baseline the databases are measured against, same run).

Each batch is one database transaction. Measured:
- `1 per batch`: single transfers (the saga case: one reservation at a time);
- `100 per batch`: bulk booking, one submitter;
- `two-phase`: a batch of 100 pending transfers, then a batch posting them: the rate
  counts completed two-phase transfers (a reservation and its post), per second;
- `x4`: the same with 4 submitters at once on their own accounts (the platform's
  workers submit concurrently).
Every run checks the books: the receiving accounts hold exactly what was sent.
Issue 13's target: >= 5,000 two-phase transfers/s batched on PostgreSQL.

Run: .venv/bin/python -m tests.benchmarks.ledger_throughput [-n 4000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from adapters.ledger.sql import SqlLedger
from sagas.ledger import Command, PostPending, Transfer
from sagas.ports import Ledger
from services.settings import PlatformSettings
from tests.fakes import InMemoryLedger
from tests.helpers import funded_book

TARGET = 5000


def _submitter(ledger: Ledger, n: int, batch: int, two_phase: bool) -> None:
    book = funded_book(ledger, "bench", 10**15)
    for i in range(0, n, batch):
        size = min(batch, n - i)
        transfers = [
            Transfer(
                id=f"bench-{uuid.uuid4().hex}",
                debit_account=book.a,
                credit_account=book.b,
                asset=book.asset,
                amount=1 + (i + j) % 7,
                pending=two_phase,
            )
            for j in range(size)
        ]
        ledger.submit(transfers)
        if two_phase:
            posts: list[Command] = [
                PostPending(id=f"{t.id}-post", pending_id=t.id) for t in transfers
            ]
            ledger.submit(posts)
    expected = sum(1 + k % 7 for k in range(n))
    received = ledger.balance(book.b)
    assert received.credits_posted == expected and received.credits_pending == 0, (
        "the benchmark booked the wrong amounts"
    )


def _rate(ledger: Ledger, n: int, batch: int, two_phase: bool = False, writers: int = 1) -> float:
    """Transfers (two-phase: completed two-phase transfers) per second."""
    began = time.perf_counter()
    with ThreadPoolExecutor(writers) as pool:
        for done in [
            pool.submit(_submitter, ledger, n // writers, batch, two_phase) for _ in range(writers)
        ]:
            done.result()
    return (n // writers) * writers / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=4000, help="transfers per measurement")
    args = parser.parse_args()
    n = args.n
    with tempfile.TemporaryDirectory() as tmp:
        backends: dict[str, Ledger] = {
            "in-memory (engine)": InMemoryLedger(),
            "SQLite (WAL, file)": SqlLedger(f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"),
            "PostgreSQL (stack)": SqlLedger(PlatformSettings.load().postgres_url),
        }
        print(f"ledger throughput, {n} transfers per run, {os.cpu_count()} cores (per second)")
        heads = ("1 per batch", "100 per batch", "100 x4", "two-phase", "two-phase x4")
        print(f"{'backend':<22}" + "".join(f"{h:>15}" for h in heads))
        figures: dict[str, list[float]] = {}
        for name, ledger in backends.items():
            figures[name] = [
                _rate(ledger, min(n, 1000), 1),
                _rate(ledger, n, 100),
                _rate(ledger, n, 100, writers=4),
                _rate(ledger, n, 100, two_phase=True),
                _rate(ledger, n, 100, two_phase=True, writers=4),
            ]
            print(f"{name:<22}" + "".join(f"{f:>15.0f}" for f in figures[name]))
    pg = figures["PostgreSQL (stack)"]
    best = max(pg[3], pg[4])
    engine = figures["in-memory (engine)"][3]
    print(
        f"PostgreSQL two-phase transfers/s batched: {best:.0f} (target >= {TARGET}: "
        f"{'met' if best >= TARGET else 'NOT met'}); the engine alone: {engine:.0f}"
    )


if __name__ == "__main__":
    main()
