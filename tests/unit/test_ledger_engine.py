"""The ledger engine against a storage transaction that loses a race: a pending transfer
recorded by another batch between the batch's first read and its locks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from adapters.ledger import sql as sql_ledger
from adapters.ledger.sql import SqlLedger
from sagas.ledger import Account, AccountKind, Asset, PostPending, Transfer
from sagas.ledger.engine import Found, StaleRead, execute_batch
from tests.fakes import InMemoryLedger, _InMemoryTx

NOW = datetime(2026, 12, 1, tzinfo=UTC)


class LateTx(_InMemoryTx):
    """The first read does not see `hidden` (not committed yet); later reads do."""

    def __init__(self, ledger: InMemoryLedger, hidden: str) -> None:
        super().__init__(ledger)
        self._hidden: str | None = hidden

    def find(self, ids: Sequence[str]) -> dict[str, Found]:
        found = super().find(ids)
        if self._hidden is not None:
            found.pop(self._hidden, None)
            self._hidden = None
        return found


def _books() -> tuple[InMemoryLedger, Transfer]:
    ledger = InMemoryLedger(clock=lambda: NOW)
    ledger.register_asset(Asset(code="ETH", decimals=18))
    ledger.open_account(Account(id="omni", asset="ETH", kind=AccountKind.OMNIBUS))
    for name in ("alice", "bob"):
        ledger.open_account(Account(id=name, asset="ETH", kind=AccountKind.CLIENT_AVAILABLE))
    ledger.submit(
        [Transfer(id="fund", debit_account="omni", credit_account="alice", asset="ETH", amount=100)]
    )
    hold = Transfer(
        id="hold", debit_account="alice", credit_account="bob", asset="ETH", amount=60, pending=True
    )
    ledger.submit([hold])
    return ledger, hold


def test_a_pending_transfer_first_seen_after_the_locks_makes_the_batch_run_again() -> None:
    ledger, hold = _books()
    # The batch names only the pending transfer; its accounts were not locked up front.
    with pytest.raises(StaleRead):
        execute_batch(LateTx(ledger, hold.id), [PostPending(id="post", pending_id=hold.id)], NOW)
    assert ledger.balance("bob").credits_posted == 0  # nothing applied
    # Run again, it sees the pending transfer first and posts it once.
    (posted,) = ledger.submit([PostPending(id="post", pending_id=hold.id)])
    assert posted.kind == "post" and ledger.balance("bob").credits_posted == 60


def test_the_sql_ledger_runs_a_batch_again_after_a_stale_read(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = SqlLedger(f"sqlite:///{tmp_path / 'l.sqlite3'}")
    ledger.register_asset(Asset(code="ETH", decimals=18))
    ledger.open_account(Account(id="omni", asset="ETH", kind=AccountKind.OMNIBUS))
    ledger.open_account(Account(id="alice", asset="ETH", kind=AccountKind.CLIENT_AVAILABLE))
    real = sql_ledger.execute_batch
    calls: list[int] = []

    def racing(tx: Any, commands: Any, now: datetime) -> Any:
        calls.append(1)
        if len(calls) < 3:
            raise StaleRead("p")
        return real(tx, commands, now)

    monkeypatch.setattr(sql_ledger, "execute_batch", racing)
    fund = Transfer(id="fund", debit_account="omni", credit_account="alice", asset="ETH", amount=5)
    (record,) = ledger.submit([fund])
    assert len(calls) == 3 and record.seq > 0
    assert ledger.balance("alice").total == 5
