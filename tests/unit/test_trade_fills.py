"""Issue 11, points 2 and 5, on fakes: a fill is booked only if it is the accepted quote
(sagas/trade/fills.py), and a fiat leg is paid once under its stable key, a new key only
after the bank stated the refusal of the previous one (sagas/payments.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sagas.errors import BankInsufficientFunds, DependencyUnavailable
from sagas.liquidity import Fill, Quote
from sagas.operations import Step
from sagas.payments import pay_once
from sagas.trade.fills import fill_differences
from sagas.trade.pricing import settle
from tests.fakes_trading import FakeBank
from tests.simulators import new_iban

NOW = datetime(2026, 12, 1, tzinfo=UTC)
QUOTE = Quote(
    quote_id="q-1",
    counterparty="lp-alpha",
    pair="BTC-EUR",
    side="buy",
    price=6_012_000,
    quantity=100_000,
    notional=6_012,
    expires_at=NOW + timedelta(seconds=10),
)
CLIENT_FIAT = settle("buy", 100_000, 6_012_000, 8, 50).client_fiat  # 6_012 + 31


def fill(**changes: Any) -> Fill:
    fields = QUOTE.model_dump(exclude={"expires_at"})
    return Fill(
        **{
            **fields,
            "trade_id": "t-1",
            "client_order_id": "tr:c:1",
            "executed_at": NOW,
            **changes,
        }
    )


def differences(f: Fill, tolerance_bps: int = 10, client_fiat: int = CLIENT_FIAT) -> list[str]:
    return fill_differences(QUOTE, f, "tr:c:1", client_fiat, tolerance_bps)


def test_the_quoted_fill_is_booked() -> None:
    assert differences(fill()) == []


@pytest.mark.parametrize(
    ("changes", "word"),
    [
        ({"quantity": 100_001}, "quantity"),
        ({"quantity": 50_000, "notional": 3_006}, "quantity"),
        ({"side": "sell"}, "side"),
        ({"pair": "ETH-EUR"}, "pair"),
        ({"counterparty": "lp-beta"}, "counterparty"),
        ({"quote_id": "q-2"}, "quote_id"),
        ({"client_order_id": "tr:c:2"}, "client order id"),
        ({"notional": 6_019}, "notional"),  # 11.6 bps above
        ({"notional": 6_005}, "notional"),  # 11.6 bps below
        # The quoted quantity and notional with ten times the price: once booked, and
        # the client charged at it.
        ({"price": QUOTE.price * 10}, "price"),
        ({"price": QUOTE.price * 1012 // 1000}, "price"),  # 12 bps above
    ],
)
def test_a_fill_other_than_the_quote_is_refused(changes: dict[str, Any], word: str) -> None:
    found = differences(fill(**changes))
    assert found and word in " ".join(found)


def test_the_notional_may_differ_within_the_tolerance_only() -> None:
    assert differences(fill(notional=6_018)) == []  # 9.98 bps
    assert differences(fill(notional=6_006)) == []
    assert differences(fill(notional=6_018), tolerance_bps=0) != []
    assert differences(fill(notional=5_500), tolerance_bps=1000) == []  # cheaper: fee grows


def test_the_platforms_fee_never_goes_negative() -> None:
    # A tolerance wider than the fee: what the client accepted no longer covers the fill.
    found = differences(fill(notional=6_100), tolerance_bps=500)
    assert found == ["the platform's fee would be -57"]


class Timeline:
    """Just what pay_once needs of the operation store."""

    def __init__(self) -> None:
        self.steps: list[Step] = []

    def timeline(self, operation_id: str) -> list[Step]:
        return list(self.steps)

    def advance(self, operation_id: str, step: str, *a: Any, **kw: Any) -> bool:
        if any(s.step == step for s in self.steps):
            return False
        self.steps.append(Step(step=step, at=NOW, detail=kw.get("detail") or {}))
        return True


def test_a_lost_answer_is_found_under_the_same_key_not_paid_again() -> None:
    bank, ops = FakeBank(new_iban()), Timeline()
    client = new_iban()
    bank.open(bank.platform_iban, amount=10_000)
    bank.open(client)
    sent: list[str] = []

    def lose(key: str) -> Any:
        sent.append(key)
        bank.credit(key, client, 700, "EUR", "e2e", "proceeds")
        raise DependencyUnavailable("answer lost")

    with pytest.raises(DependencyUnavailable):
        pay_once(bank, ops, "tr:c:1", "credit", "tr:c:1:credit", lose)  # type: ignore[arg-type]
    again = pay_once(bank, ops, "tr:c:1", "credit", "tr:c:1:credit", lose)  # type: ignore[arg-type]
    assert again.amount == 700 and sent == ["tr:c:1:credit:1"]
    assert bank.balance(client).booked == 700


def test_after_a_refusal_the_next_key_and_only_one_pays() -> None:
    bank, ops = FakeBank(new_iban()), Timeline()
    client = new_iban()
    bank.open(bank.platform_iban, amount=500)
    bank.open(client)
    keys: list[str] = []

    def credit(key: str) -> Any:
        keys.append(key)
        return bank.credit(key, client, 700, "EUR", "e2e", "proceeds")

    # The platform's account is short. A send's refusal moves nothing on; the next try
    # asks the bank about the key, which states the refusal: recorded, then a new key.
    for tries in range(4):
        with pytest.raises(BankInsufficientFunds):
            pay_once(bank, ops, "tr:c:1", "credit", "tr:c:1:credit", credit)  # type: ignore[arg-type]
        assert len(ops.steps) == (tries + 1) // 2
    assert [s.step for s in ops.steps] == ["payment_refused:credit:1", "payment_refused:credit:2"]
    bank.open(bank.platform_iban, amount=1_000)  # an operator funds it
    paid = pay_once(bank, ops, "tr:c:1", "credit", "tr:c:1:credit", credit)  # type: ignore[arg-type]
    assert pay_once(bank, ops, "tr:c:1", "credit", "tr:c:1:credit", credit).payment_id == (  # type: ignore[arg-type]
        paid.payment_id
    )
    assert keys == ["tr:c:1:credit:1", "tr:c:1:credit:2", "tr:c:1:credit:3"]
    assert bank.balance(client).booked == 700


class _QueryFails:
    """A bank whose answer about a key is not its word on it (a gateway's 4xx, a 429):
    the adapter raises that as transient."""

    def __init__(self, bank: FakeBank) -> None:
        self._bank = bank

    def payment(self, key: str) -> Any:
        raise DependencyUnavailable("bank answered 429")


def test_a_failed_query_never_moves_the_leg_to_a_new_key() -> None:
    bank, ops = FakeBank(new_iban()), Timeline()
    client = new_iban()
    bank.open(bank.platform_iban, amount=10_000)
    bank.open(client)
    sent: list[str] = []

    def lose(key: str) -> Any:  # paid, answer lost
        sent.append(key)
        bank.credit(key, client, 700, "EUR", "e2e", "proceeds")
        raise DependencyUnavailable("answer lost")

    with pytest.raises(DependencyUnavailable):
        pay_once(bank, ops, "tr:c:1", "credit", "tr:c:1:credit", lose)  # type: ignore[arg-type]
    for _ in range(3):  # the query fails: nothing recorded, nothing sent again
        with pytest.raises(DependencyUnavailable):
            pay_once(_QueryFails(bank), ops, "tr:c:1", "credit", "tr:c:1:credit", lose)  # type: ignore[arg-type]
    assert ops.steps == [] and sent == ["tr:c:1:credit:1"]
    paid = pay_once(bank, ops, "tr:c:1", "credit", "tr:c:1:credit", lose)  # type: ignore[arg-type]
    assert paid.amount == 700 and bank.balance(client).booked == 700  # once
