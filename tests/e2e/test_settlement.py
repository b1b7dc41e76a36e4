"""Acceptance 3 of issue 6 over HTTP on the real stack: 100 trades with 3 counterparties
net to one instruction per counterparty and asset and settle delivery versus payment
(the providers' crypto on chain and credited, fiat at the bank, the platform's legs
after); a counterparty that does not deliver is compensated (the platform sends
nothing, the trades are unsettled again and settle next time); reconciliation is clean
afterwards; the worker's Temporal schedule settles too."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from adapters.sqldb import SqlDatabase
from adapters.temporal import connect
from sagas.money import parse_units
from sagas.settlement.activities import end_to_end_id
from tests.e2e.harness import Running, post, wait_for
from tests.e2e.trading import banked_client, trade, until_ended
from tests.simulators import set_faults, statement

PLATFORM = {"settlement_leg_timeout_seconds": "180", "settlement_every_seconds": "3600"}
EUR = 100
BTC_LOT, ETH_LOT = "0.001", "0.01"
# Per counterparty: (side, asset, how many); buys first. lp-gamma's clients sell more ETH
# than they buy: the platform delivers ETH there.
PLAN = {
    "lp-alpha": [("buy", "BTC", 20), ("buy", "ETH", 8), ("sell", "BTC", 5)],
    "lp-beta": [("buy", "BTC", 15), ("buy", "ETH", 10), ("sell", "ETH", 8)],
    "lp-gamma": [("buy", "BTC", 20), ("buy", "ETH", 4), ("sell", "ETH", 10)],
}
ENDED = ("settled", "partly_settled", "compensated", "nothing_to_settle")


def run_trades(
    client: Any, client_id: str, orders: list[tuple[str, str, str]]
) -> list[dict[str, Any]]:
    def one(order: tuple[str, str, str]) -> dict[str, Any]:
        cp, side, asset = order
        body = {
            "side": side,
            "asset": asset,
            "quantity": BTC_LOT if asset == "BTC" else ETH_LOT,
            "auto_accept": True,
            "counterparty": cp,
        }
        done = until_ended(client, trade(client, client_id, body)["operation_id"], timeout=300)
        assert done["state"] == "completed", done
        return done

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, orders))


def settle(ops: Any, name: str, **body: Any) -> dict[str, Any]:
    key = f"{name}-{uuid.uuid4().hex[:8]}"  # workflow ids outlive a test's database
    started = post(ops, "/v1/settlements", body, key)
    assert started.status_code == 202, started.text

    def ended() -> dict[str, Any] | None:
        found = ops.get(f"/v1/settlements/st:{key}").json()
        return found if found["state"] in ENDED else None

    return dict(wait_for(f"settlement {key}", ended, timeout=300, every=1))


def positions(ops: Any) -> dict[tuple[str, str], dict[str, Any]]:
    return {(p["counterparty"], p["asset"]): p for p in ops.get("/v1/liquidity/positions").json()}


def test_100_trades_with_3_counterparties_net_and_settle_dvp(run: Running) -> None:
    s = run.settings
    client_id, ops, client, _iban = banked_client(run, 100_000 * EUR, "st")
    buys = [
        (cp, side, a)
        for cp, rows in PLAN.items()
        for side, a, n in rows
        if side == "buy"
        for _ in range(n)
    ]
    sells = [
        (cp, side, a)
        for cp, rows in PLAN.items()
        for side, a, n in rows
        if side == "sell"
        for _ in range(n)
    ]
    done = run_trades(client, client_id, buys) + run_trades(client, client_id, sells)
    assert len(done) == 100

    # What each counterparty's trades net to: the provider delivers a positive amount.
    net: dict[str, Counter[str]] = defaultdict(Counter)
    for t in done:
        sign = 1 if t["side"] == "buy" else -1
        net[t["counterparty"]][t["asset"]] += sign * int(t["quantity_minor"])
        net[t["counterparty"]]["EUR"] -= sign * parse_units(t["provider_amount"], 2)
    assert {cp: dict(v) for cp, v in net.items()}.keys() == PLAN.keys()
    before = positions(ops)
    assert sum(p["unsettled_trades"] for p in before.values()) == 100

    result = settle(ops, "eod-1")
    assert result["state"] == "settled", [
        x["detail"] for x in result["timeline"] if x["step"].startswith("compensated")
    ]
    instructions = {i["counterparty"]: i for i in result["instructions"]}
    assert set(instructions) == set(PLAN)
    for cp, part in instructions.items():
        assert part["trades"] == sum(n for _s, _a, n in PLAN[cp])
        legs = {leg["asset"]: leg for leg in part["legs"]}
        assert len(legs) == len(part["legs"])  # one instruction per counterparty and asset
        for asset, amount in net[cp].items():
            leg = legs[asset]
            assert int(leg["amount_minor"]) == abs(amount)
            assert leg["payer"] == ("provider" if amount > 0 else "platform")
    assert instructions["lp-gamma"]["legs"][1]["asset"] == "ETH"
    assert instructions["lp-gamma"]["legs"][1]["payer"] == "platform"  # the platform delivers

    # Fiat at the bank: one payment per counterparty, in the right direction and amount.
    for cp in instructions:
        e2e = end_to_end_id(result["settlement_id"], cp)
        fiat = statement(s.bank_url, s.bank_platform_iban, e2e)
        amount = net[cp]["EUR"]
        assert [(e["indicator"], e["amount"]) for e in fiat] == [
            ("CRDT" if amount > 0 else "DBIT", abs(amount))
        ]

    # The platform's ETH leg to lp-gamma left on chain, for exactly the net amount.
    with SqlDatabase(run.db_url).tx() as conn:
        (tx_hash,) = conn.one(
            "select tx_hash from operations where id = ?",
            (f"{result['settlement_id']}:lp-gamma:ETH",),
        )
    sent = run.eth.web3.eth.get_transaction(tx_hash)
    assert sent["value"] == -net["lp-gamma"]["ETH"]

    # Reconciliation is clean: every settlement account back to zero, nothing unsettled.
    assert result["breaks"] == []
    after = positions(ops)
    assert all(p["ledger_minor"] == "0" and p["unsettled_trades"] == 0 for p in after.values()), (
        after
    )


def test_a_counterparty_that_does_not_deliver_is_compensated_then_settles(run: Running) -> None:
    s = run.settings
    client_id, ops, client, _iban = banked_client(run, 10_000 * EUR, "dvp")
    run_trades(client, client_id, [("lp-beta", "buy", "BTC")] * 3)
    set_faults(s.lp_url, reject_next=1, operations=["deliver"])  # lp-beta withholds its legs
    try:
        failed = settle(ops, "withheld-1", leg_timeout_seconds=15)
    finally:
        set_faults(s.lp_url)
    assert failed["state"] == "compensated", failed["timeline"]
    steps = [x["step"] for x in failed["timeline"]]
    assert "compensated:lp-beta" in steps and "settled:lp-beta" not in steps
    # The platform released nothing: no payment to the provider under this settlement.
    e2e = end_to_end_id(failed["settlement_id"], "lp-beta")
    assert [
        e for e in statement(s.bank_url, s.bank_platform_iban) if e["end_to_end_id"] == e2e
    ] == []
    # The trades are unsettled again, and reconciliation agrees with that.
    assert failed["breaks"] == []
    assert positions(ops)[("lp-beta", "BTC")]["unsettled_trades"] == 3
    assert positions(ops)[("lp-beta", "BTC")]["ledger_minor"] == str(-3 * 100_000)

    # Next time it delivers: settled, and clean.
    again = settle(ops, "retry-1")
    assert again["state"] == "settled", again["timeline"]
    assert again["breaks"] == []
    assert positions(ops)[("lp-beta", "BTC")] | {"counterparty": "lp-beta"} == {
        "counterparty": "lp-beta",
        "asset": "BTC",
        "ledger_minor": "0",
        "unsettled_trades": 0,
        "unsettled_quantity_minor": "0",
        "unsettled_fiat_minor": "0",
    }


def test_the_workers_schedule_settles(run: Running) -> None:
    client_id, ops, client, _iban = banked_client(run, 1_000 * EUR, "sch")
    run_trades(client, client_id, [("lp-alpha", "buy", "ETH")])
    schedule_id = run.env["CUSTODY_SETTLEMENT_SCHEDULE_ID"]

    async def trigger() -> None:
        temporal = await connect(
            run.settings.temporal_address,
            run.settings.temporal_namespace,
            run.settings.temporal_transport(),
        )
        handle = temporal.get_schedule_handle(schedule_id)
        described = await handle.describe()
        assert described.schedule.spec.intervals[0].every.total_seconds() == 3600
        await handle.trigger()

    asyncio.run(trigger())
    try:

        def scheduled() -> str | None:
            with SqlDatabase(run.db_url).tx() as conn:
                row = conn.one(
                    "select state from operations where kind = 'settlement' and id like ?",
                    (f"st:{schedule_id}%",),
                )
            return None if row is None or row[0] not in ENDED else str(row[0])

        assert wait_for("the scheduled settlement", scheduled, timeout=180, every=1) == "settled"
        assert positions(ops)[("lp-alpha", "ETH")]["unsettled_trades"] == 0
    finally:

        async def delete() -> None:
            temporal = await connect(
                run.settings.temporal_address,
                run.settings.temporal_namespace,
                run.settings.temporal_transport(),
            )
            await temporal.get_schedule_handle(schedule_id).delete()

        asyncio.run(delete())
