"""Ledger transfers per second on SQLite and PostgreSQL (the stack's), and the in-memory fake.

Each batch is one DB transaction; the run reports single-transfer batches (the
saga case: one reservation at a time) and 100-transfer batches (bulk booking).
Run: .venv/bin/python -m tests.benchmarks.ledger_throughput [-n 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from adapters.ledger.sql import SqlLedger
from sagas.ledger import Transfer
from sagas.ports import Ledger
from services.settings import PlatformSettings
from tests.fakes import InMemoryLedger
from tests.helpers import funded_book


def _setup(ledger: Ledger) -> tuple[str, str, str, str]:
    book = funded_book(ledger, "bench", 10**15)
    return book.asset, book.omnibus, book.a, book.b


def _run(ledger: Ledger, n: int, batch: int) -> float:
    asset, _omni, a, b = _setup(ledger)
    began = time.perf_counter()
    for i in range(0, n, batch):
        ledger.submit(
            [
                Transfer(
                    id=f"bench-{uuid.uuid4().hex}",
                    debit_account=a,
                    credit_account=b,
                    asset=asset,
                    amount=1 + (i + j) % 7,
                )
                for j in range(batch)
            ]
        )
    elapsed = time.perf_counter() - began
    expected = sum(1 + k % 7 for k in range(n))
    assert ledger.balance(b).total == expected, "benchmark booked the wrong amounts"
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=2000, help="transfers per measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        backends: dict[str, Ledger] = {
            "in-memory fake": InMemoryLedger(),
            "SQLite (WAL, file)": SqlLedger(f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"),
            "PostgreSQL (stack)": SqlLedger(PlatformSettings.load().postgres_url),
        }
        print(f"ledger throughput, {args.n} transfers per run (transfers/s)")
        print(f"{'backend':<22}{'1 per batch':>14}{'100 per batch':>16}")
        for name, ledger in backends.items():
            single = _run(ledger, args.n, 1)
            bulk = _run(ledger, args.n, 100)
            print(f"{name:<22}{single:>14.0f}{bulk:>16.0f}")


if __name__ == "__main__":
    main()
