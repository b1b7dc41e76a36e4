"""The trade store on SQLite and PostgreSQL, and its fake (tests/fakes.py): a trade
recorded once, unsettled trades oldest first, a trade taken by one settlement only and
given back when its settlement did not happen, clients' bank accounts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.operations.store import SqlOperationStore
from adapters.operations.trades import SqlTradeStore
from sagas.errors import NotFound
from sagas.operations import OperationRecord
from sagas.ports import OperationStore, TradeStore
from sagas.trade import TradeRecord
from tests.fakes import FakeOperationStore, FakeTradeStore

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[TradeStore, OperationStore]]:
    if request.param == "memory":
        ops = FakeOperationStore()
        yield FakeTradeStore(ops), ops
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'trades.sqlite3'}"
    else:
        request.node.add_marker(pytest.mark.stack)
        url = request.getfixturevalue("fresh_postgres_url")
    yield SqlTradeStore(url), SqlOperationStore(url)


def trade(
    op_id: str, counterparty: str = "lp-alpha", minutes: int = 0, quantity: int = 10
) -> TradeRecord:
    return TradeRecord(
        operation_id=op_id,
        client_id="c1",
        side="buy",
        asset="BTC",
        currency="EUR",
        counterparty=counterparty,
        client_order_id=f"co-{op_id}",
        quote_id=f"q-{op_id}",
        trade_id=f"t-{op_id}",
        price=6_000_000,
        quantity=quantity,
        lp_notional=600,
        fee=3,
        client_fiat=603,
        executed_at=T0 + timedelta(minutes=minutes),
    )


def ids(ops: OperationStore, n: int) -> list[str]:
    """n new trade operations (a trade is an operation's: the store refuses one of none)."""
    made = [f"tr:c1:{uuid.uuid4().hex[:6]}" for _ in range(n)]
    for op_id in made:
        ops.create(
            OperationRecord(
                id=op_id,
                kind="trade",
                client_id="c1",
                asset="BTC",
                chain="bitcoin",
                amount=10,
                request_hash=op_id,
                requested_by="u1",
                state="requested",
                created_at=T0,
                updated_at=T0,
            )
        )
    return made


def test_a_trade_is_recorded_once(stores: tuple[TradeStore, OperationStore]) -> None:
    store, ops = stores
    with pytest.raises(NotFound):
        store.record(trade("tr:c1:no-such-operation"))
    (op_id,) = ids(ops, 1)
    first = store.record(trade(op_id))
    again = store.record(trade(op_id, quantity=99))  # a repeat: the stored one stands
    assert again == first and store.get(op_id) == first
    assert store.get("tr:c1:none") is None


def test_unsettled_trades_come_oldest_first_by_counterparty(
    stores: tuple[TradeStore, OperationStore],
) -> None:
    store, ops = stores
    a, b, c = ids(ops, 3)
    store.record(trade(a, minutes=5))
    store.record(trade(b, minutes=1))
    store.record(trade(c, counterparty="lp-beta", minutes=3))
    assert [t.operation_id for t in store.unsettled()] == [b, c, a]
    assert [t.operation_id for t in store.unsettled("lp-alpha")] == [b, a]


def test_a_trade_is_taken_by_one_settlement_and_given_back(
    stores: tuple[TradeStore, OperationStore],
) -> None:
    store, ops = stores
    a, b, c = ids(ops, 3)
    for op_id, cp in ((a, "lp-alpha"), (b, "lp-alpha"), (c, "lp-beta")):
        store.record(trade(op_id, counterparty=cp))
    assert sorted(store.assign("s1", [a, b, c])) == sorted([a, b, c])
    assert store.assign("s1", [a]) == [a]  # its own settlement again: still its
    assert store.assign("s2", [a, b, c]) == []  # never a second settlement
    assert store.unsettled() == []
    assert {t.operation_id for t in store.for_settlement("s1")} == {a, b, c}
    assert store.release("s1", "lp-alpha") == sorted([a, b])
    assert [t.operation_id for t in store.for_settlement("s1")] == [c]
    assert {t.operation_id for t in store.unsettled()} == {a, b}
    assert sorted(store.assign("s2", [a, b])) == sorted([a, b])


def test_a_clients_bank_account(stores: tuple[TradeStore, OperationStore]) -> None:
    store, ops = stores
    with pytest.raises(NotFound):
        store.set_bank_account("nobody", "DE89370400440532013000", "COBADEFFXXX")
    ops.create_client("c1", "Client One", "u1")
    assert store.bank_account("c1") is None
    store.set_bank_account("c1", "DE89370400440532013000", "COBADEFFXXX")
    assert store.bank_account("c1") == ("DE89370400440532013000", "COBADEFFXXX")
