"""Issue 11, points 2 and 5, over HTTP on the real stack: a fiat leg whose answer the bank
loses while its statements lag is paid exactly once (a settlement's fiat leg, a sale's
proceeds), and a fill other than the accepted quote is refused and alerted, never booked
nor charged.

This module runs its own bank and liquidity simulators of this checkout (on the stack's
chains, as `custody stack up` sets them up): their fault switches are its alone, and
they have the switches this needs (`statement_lag_seconds`, `fill_skew_bps`) whatever
version the stack's long-running simulators are.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from adapters.kafka.bus import KafkaEventBus
from sagas.money import parse_units
from sagas.settlement.activities import end_to_end_id as settlement_e2e
from sagas.topics import ALERTS
from sagas.trade.activities import end_to_end_id
from tests.e2e.conftest import balances
from tests.e2e.harness import Running, post, wait_for
from tests.e2e.trading import banked_client, steps, trade, until_ended
from tests.simulators import (
    bank_account,
    free_port,
    lp_order,
    own_trading_simulators,
    set_faults,
    statement,
)

BANK_PORT, LP_PORT = free_port(), free_port()
BANK, LP = f"http://127.0.0.1:{BANK_PORT}", f"http://127.0.0.1:{LP_PORT}"
PLATFORM = {"bank_url": BANK, "lp_url": LP, "settlement_leg_timeout_seconds": "180"}
PLATFORM_AHEAD = False  # its processes use the simulators its own fixture starts
EUR = 100
FILL_ALERT = "custody.alert.trade_fill_mismatch.v1"  # as the event catalogue names it
BUY = {"side": "buy", "asset": "BTC", "quantity": "0.001", "auto_accept": True}
# The adapter tries a call 3 times with its key: every answer of the first activity
# attempt is lost, and the statement hides what was booked in the last two minutes.
LOST_AND_LAGGING = {"lose_next": 3, "operations": ["payment"], "statement_lag_seconds": 120}


@pytest.fixture(scope="module", autouse=True)
def simulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with own_trading_simulators(tmp_path_factory.mktemp("sims"), BANK_PORT, LP_PORT):
        yield


@pytest.fixture(scope="module")
def run(simulators: None, run: Running) -> Running:
    """The platform on this module's simulators (the tests' helpers read these URLs). Their
    providers sign settlement confirmations with keys of their own: registered in
    governance beside the stack's providers' keys, by the quorum."""
    run.settings = run.settings.model_copy(update={"bank_url": BANK, "lp_url": LP})
    for name in run.settings.counterparties():
        public = httpx.get(f"{LP}/v1/lp/{name}/keys", timeout=10).json()["public_key"]
        run.govern_direct("counterparty_key_change", {"action": "add", "public_key": public}, name)
    return run


@pytest.fixture(autouse=True)
def no_faults() -> Iterator[None]:
    set_faults(BANK)
    set_faults(LP)
    yield
    set_faults(BANK)
    set_faults(LP)


def entries(iban: str, e2e: str) -> list[tuple[str, int]]:
    return [(e["indicator"], e["amount"]) for e in statement(BANK, iban, e2e)]


def settle(ops: Any) -> dict[str, Any]:
    key = f"paid-once-{uuid.uuid4().hex[:8]}"
    started = post(ops, "/v1/settlements", {}, key)
    assert started.status_code == 202, started.text

    def ended() -> dict[str, Any] | None:
        found = ops.get(f"/v1/settlements/st:{key}").json()
        ending = ("settled", "partly_settled", "compensated", "nothing_to_settle")
        return found if found["state"] in ending else None

    return dict(wait_for(f"settlement {key}", ended, timeout=300, every=1))


# First: the settlement nets only this test's trade (one platform EUR leg to lp-alpha).
def test_a_settlement_fiat_leg_whose_answer_is_lost_is_paid_once(run: Running) -> None:
    client_id, ops, client, _iban = banked_client(run, 1_000 * EUR, "po")
    bought = trade(client, client_id, {**BUY, "counterparty": "lp-alpha"})
    bought = until_ended(client, bought["operation_id"])
    assert bought["state"] == "completed", bought
    set_faults(BANK, **LOST_AND_LAGGING)
    result = settle(ops)
    set_faults(BANK)
    assert result["state"] == "settled", result["timeline"]
    (part,) = result["instructions"]
    eur = next(leg for leg in part["legs"] if leg["asset"] == "EUR")
    assert (part["counterparty"], eur["payer"]) == ("lp-alpha", "platform")
    e2e = settlement_e2e(result["settlement_id"], "lp-alpha")
    assert entries(run.settings.bank_platform_iban, e2e) == [("DBIT", int(eur["amount_minor"]))]
    provider = next(leg["to"] for leg in part["legs"] if leg["asset"] == "EUR")
    assert entries(provider, e2e) == [("CRDT", int(eur["amount_minor"]))]


@pytest.mark.parametrize("price_only", [False, True], ids=["price-and-notional", "price-only"])
def test_a_fill_other_than_the_quote_is_refused_alerted_and_never_booked(
    run: Running, price_only: bool
) -> None:
    client_id, ops, client, iban = banked_client(run, 1_000 * EUR, "fm")
    alerts = KafkaEventBus(run.settings.kafka_client("admin"))
    group = f"test-fill-{uuid.uuid4().hex[:8]}"
    alerts.read(ALERTS.name, group, 100_000, 30)  # from here on: this test's alerts
    # 1 %: ten times the tolerance; price only: the quoted quantity and notional with
    # another price, which the platform once booked and charged the client for.
    skew = 1000 if price_only else 100
    set_faults(LP, fill_skew_bps=skew, fill_skew_price_only=price_only, operations=["execute"])
    t = until_ended(client, trade(client, client_id, BUY)["operation_id"])

    assert (t["state"], t["error_code"]) == ("rejected", "CUS-5106"), t
    assert "fill_mismatch" in steps(t) and "booked" not in steps(t)
    assert steps(t)[-2:] == ["released", "rejected"]
    # Executed at the provider, other than quoted.
    order = lp_order(LP, t["counterparty"], t["operation_id"])
    assert order is not None and order["status"] == "filled"
    assert price_only or order["notional"] != parse_units(t["provider_amount"], 2)
    # Nothing booked to the client or the provider's account; nothing captured.
    assert balances(client, client_id)["BTC"] == 0
    account = bank_account(BANK, iban)
    assert (account["booked"], account["held"]) == (1_000 * EUR, 0)
    assert entries(iban, end_to_end_id(t["operation_id"])) == []
    positions = {
        (p["counterparty"], p["asset"]): p for p in ops.get("/v1/liquidity/positions").json()
    }
    position = positions.get((t["counterparty"], "BTC"))
    assert position is None or (position["ledger_minor"], position["unsettled_trades"]) == ("0", 0)

    def alerted() -> list[Any]:
        return [
            e
            for e in alerts.read(ALERTS.name, group, 1_000, 5)
            if e.type == FILL_ALERT and e.subject == t["operation_id"]
        ]

    (alert,) = wait_for("the fill-mismatch alert", alerted, timeout=60)
    assert alert.data["trade_id"] == order["trade_id"]
    assert alert.data["filled_notional"] == str(order["notional"])
    word = "price" if price_only else "notional"
    assert any(d.startswith(word) for d in alert.data["differences"]), alert.data


def test_a_sales_proceeds_whose_answer_is_lost_are_paid_once(run: Running) -> None:
    client_id, _ops, client, iban = banked_client(run, 1_000 * EUR, "ps")
    bought = until_ended(client, trade(client, client_id, BUY)["operation_id"])
    assert bought["state"] == "completed", bought
    set_faults(BANK, **LOST_AND_LAGGING)
    sold = until_ended(client, trade(client, client_id, {**BUY, "side": "sell"})["operation_id"])
    set_faults(BANK)
    assert sold["state"] == "completed", sold
    assert entries(iban, end_to_end_id(sold["operation_id"])) == [
        ("CRDT", int(sold["client_amount_minor"]))
    ]
    paid, got = int(bought["client_amount_minor"]), int(sold["client_amount_minor"])
    assert bank_account(BANK, iban)["booked"] == 1_000 * EUR - paid + got
    assert balances(client, client_id)["BTC"] == 0
