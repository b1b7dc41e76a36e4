"""Integration helpers for deposits booked without running the deposit saga."""

from __future__ import annotations

from datetime import UTC, datetime

from adapters.operations.store import SqlOperationStore
from sagas.deposit import workflow_id
from sagas.operations import OperationRecord


def credited(url: str, tx_hash: str, position: str, amount: int) -> None:
    """Record a Bitcoin deposit as the deposit saga leaves it once credited: only then
    may the sender spend its coin (tests/integration/test_bitcoin_payouts.py runs the
    saga's own steps instead)."""
    now = datetime.now(UTC)
    SqlOperationStore(url).create(
        OperationRecord(
            id=workflow_id("bitcoin", tx_hash, position),
            kind="deposit",
            client_id=None,
            asset="BTC",
            chain="bitcoin",
            amount=amount,
            request_hash="-",
            requested_by="chainwatch",
            state="credited",
            created_at=now,
            updated_at=now,
        )
    )
