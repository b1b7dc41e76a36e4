"""Acceptance 1 of issue 6, over HTTP on the real stack: a client with EUR at the bank
buys BTC (by quantity, auto-accepted) and ETH (by amount to spend, accepted by the
client), then sells part of the BTC back. The bank's balances and statement, the
custody ledger, the providers' orders and positions, the events and the audit chain
all agree."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from adapters.ledger.sql import SqlLedger
from adapters.temporal import connect
from sagas import accounts
from sagas.errors import UnknownAccount
from sagas.trade.activities import end_to_end_id
from sagas.trade.pricing import settle
from sagas.trade.workflows import TradeWorkflow
from services.worker.bootstrap import SANDBOX
from tests.e2e.conftest import balances
from tests.e2e.harness import Running, post
from tests.e2e.test_custody_flow import sse
from tests.e2e.trading import banked_client, steps, trade, until_ended
from tests.simulators import bank_account, lp_order, lp_positions, statement

# One platform with the defaults, shared with the other modules that set this (conftest).
SHARED_PLATFORM = True

EUR = 100  # cents


def test_buy_btc_and_eth_then_sell_part_back(run: Running) -> None:
    s = run.settings
    client_id, _ops, client, iban = banked_client(run, 10_000 * EUR)
    platform_before = bank_account(s.bank_url, s.bank_platform_iban)["booked"]
    positions_before = {cp: lp_positions(s.lp_url, cp) for cp in s.counterparties()}
    ledger = SqlLedger(run.db_url, migrate=False)
    books_before = {
        (cp, asset): _total(ledger, accounts.settlement(cp, asset))
        for cp in s.counterparties()
        for asset in ("BTC", "ETH")
    }

    # 1. Buy 0.01 BTC, executing the best quote at once.
    btc = trade(
        client, client_id, {"side": "buy", "asset": "BTC", "quantity": "0.01", "auto_accept": True}
    )
    assert btc["side"] == "buy" and btc["quantity_minor"] == "1000000"
    btc = until_ended(client, btc["operation_id"])
    assert btc["state"] == "completed", btc

    # 2. Spend at most 500 EUR on ETH: the quote waits for the client's acceptance.
    eth = trade(client, client_id, {"side": "buy", "asset": "ETH", "spend": "500.00"})
    assert eth["state"] == "quoted", eth
    assert 0 < int(eth["client_amount_minor"]) <= 500 * EUR
    accepted = post(client, f"/v1/trades/{eth['operation_id']}/accept", {})
    assert accepted.status_code == 200, accepted.text
    again = post(client, f"/v1/trades/{eth['operation_id']}/accept", {})
    assert again.status_code == 409 and again.json()["code"] == "CUS-3009"
    eth = until_ended(client, eth["operation_id"])
    assert eth["state"] == "completed", eth

    # 3. Sell 0.004 BTC back.
    sale = trade(
        client,
        client_id,
        {"side": "sell", "asset": "BTC", "quantity": "0.004", "auto_accept": True},
    )
    sale = until_ended(client, sale["operation_id"])
    assert sale["state"] == "completed", sale
    assert steps(sale) == [
        "requested",
        "quoted",
        "accepted",
        "reserved",
        "executed",
        "booked",
        "completed",
    ]
    assert steps(btc) == [
        "requested",
        "quoted",
        "accepted",
        "held",
        "executed",
        "booked",
        "completed",
    ]

    trades = [btc, eth, sale]
    fiat = {t["operation_id"]: int(t["client_amount_minor"]) for t in trades}
    eth_quantity = int(eth["quantity_minor"])

    # The rounding rule holds for each: client amount = provider amount +- fee, exactly.
    for t in trades:
        decimals = 8 if t["asset"] == "BTC" else 18
        price = round_cents(t["price"])
        expected = settle(t["side"], int(t["quantity_minor"]), price, decimals, s.trade_fee_bps)
        assert expected.client_fiat == int(t["client_amount_minor"])
        assert expected.balanced

    # The custody ledger: what the client bought, less what they sold.
    assert balances(client, client_id) == {
        "BTC": 600_000,
        "ETH": eth_quantity,
        "CTUSD": 0,
        "ATOM": 0,
    }

    # The bank: the client paid both buys and got the sale's proceeds, nothing is held;
    # the platform's account took the difference.
    account = bank_account(s.bank_url, iban)
    paid = fiat[btc["operation_id"]] + fiat[eth["operation_id"]] - fiat[sale["operation_id"]]
    assert (account["booked"], account["held"]) == (10_000 * EUR - paid, 0)
    assert bank_account(s.bank_url, s.bank_platform_iban)["booked"] - platform_before == paid
    entries = statement(s.bank_url, iban)
    by_e2e = {e["end_to_end_id"]: e for e in entries}
    for t in trades:
        entry = by_e2e[end_to_end_id(t["operation_id"])]
        assert entry["amount"] == fiat[t["operation_id"]]
        assert entry["indicator"] == ("DBIT" if t["side"] == "buy" else "CRDT")
        assert entry["counterparty_iban"] == s.bank_platform_iban
        assert t["operation_id"] in entry["remittance_info"]

    # The providers: each order exists once, as booked; their positions moved by it.
    moved: dict[str, Counter[str]] = {cp: Counter() for cp in s.counterparties()}
    for t in trades:
        order = lp_order(s.lp_url, t["counterparty"], t["operation_id"])
        assert order is not None and order["status"] == "filled"
        assert order["trade_id"] == t["trade_id"]
        assert order["quantity"] == int(t["quantity_minor"])
        assert order["notional"] == round_cents(t["provider_amount"])
        sign = 1 if t["side"] == "buy" else -1
        moved[t["counterparty"]][t["asset"]] += sign * order["quantity"]
        moved[t["counterparty"]]["EUR"] += sign * order["notional"]
    for cp, deltas in moved.items():
        after = lp_positions(s.lp_url, cp)
        for asset, delta in deltas.items():
            before = positions_before[cp].get(asset, {"quantity": 0})["quantity"]
            assert after.get(asset, {"quantity": 0})["quantity"] - before == delta
            if asset != "EUR":
                # The ledger's settlement account is the provider's position in the asset.
                moved_in_books = _total(ledger, accounts.settlement(cp, asset))
                assert books_before[cp, asset] - moved_in_books == delta

    # The events, read back through the client's event stream.
    types = Counter(e["type"] for e in sse(client, client_id))
    assert types["custody.trade.completed.v1"] == 3
    assert types["custody.trade.executed.v1"] == 3
    assert types["custody.trade.held.v1"] == 2 and types["custody.trade.reserved.v1"] == 1

    # The audit chain takes every event and verifies.
    audit(run)
    asyncio.run(replay(run, [t["operation_id"] for t in trades]))


def _total(ledger: SqlLedger, account_id: str) -> int:
    """The account's total; 0 before it is opened (its first trade opens it)."""
    try:
        return ledger.balance(account_id).total
    except UnknownAccount:
        return 0


def round_cents(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * 100 + int(frac.ljust(2, "0") or "0")


def audit(run: Running) -> None:
    """The platform's audit writer has chained every event, and the chain verifies."""
    run.audit_caught_up()
    done = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "audit", "verify"],
        env=run.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "OK" in done.stdout


async def replay(run: Running, ids: list[str]) -> None:
    temporal = await connect(
        run.settings.temporal_address,
        run.settings.temporal_namespace,
        run.settings.temporal_transport(),
    )
    replayer = Replayer(
        workflows=[TradeWorkflow], data_converter=pydantic_data_converter, workflow_runner=SANDBOX
    )
    for wid in ids:
        await replayer.replay_workflow(await temporal.get_workflow_handle(wid).fetch_history())
