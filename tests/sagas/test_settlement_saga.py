"""The settlement saga in seconds: its real workflow and activities over the fakes of the
bank, the providers, the payouts and the chain watcher's observations, on the
time-skipping test server. The trades it settles are made by the trade saga, and a
provider's crypto reaches the platform through the deposit saga (decision 0010), all on
one worker.

A netted settlement of two providers: each gets one net leg per asset, the platform's
legs are released only once the provider's have arrived, each is paid once and booked,
and the settlement accounts reconcile to nothing. A provider whose confirmation is not
signed by its registered key (decision 0020), or who does not deliver within the leg
timeout, is compensated with nothing of the platform's sent and its trades unsettled
again. A platform leg that reverts on chain stays owed: alerted, and a break."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy

from sagas import accounts
from sagas.deposit import DepositInput, DepositNudge
from sagas.deposit.activities import DepositActivities
from sagas.deposit.workflows import DepositWorkflow
from sagas.governance import StaticGovernance
from sagas.intents import RegisteredKey
from sagas.ledger import BTC, Transfer
from sagas.settlement import SettlementInput, SettlementResult, leg_operation
from sagas.settlement.activities import SettlementActivities
from sagas.settlement.events import BREAK_ALERT, FAILED_ALERT
from sagas.settlement.workflows import SettlementWorkflow
from sagas.trade import TradeInput, TradeRecord
from sagas.trade.activities import TradeActivities
from sagas.trade.workflows import TradeWorkflow
from tests.fakes import FakeIntentStore, FakeOperationStore, FakeTradeStore, InMemoryLedger
from tests.fakes_chains import FakeDepositObservations, FakePayouts, Output
from tests.fakes_trading import FakeBank, FakeLiquidity
from tests.sagas.conftest import QUEUE, SagaServer, books, keep_history, requested, until
from tests.simulators import new_iban

CLIENT = "acme"
EUR = 100  # cents
# The providers' quotes live a day, so a shared server's clock, skipped ahead by an earlier
# scenario's leg timeout, never finds them expired (the trade saga compares the two).
SERVER = "settlements"
QUOTE_TTL = 24 * 3600


def deposit_address(counterparty: str, asset: str) -> str:
    """The platform's address for the provider's deliveries (its settlement account's)."""
    return f"sb1q{counterparty.replace('-', '')}{asset.lower()}in"


def no_screening_hits() -> Any:
    class Clean:
        def sources(self, chain: str, tx_hash: str) -> list[str]:
            return []

        def check(self, chain: str, addresses: Any) -> str | None:
            return None

    return Clean()


@dataclass
class WatchedPayouts(FakePayouts):
    """`before_send` runs as the platform's crypto leg is sent (before it is recorded)."""

    before_send: Callable[[], object] = lambda: None

    def send(
        self,
        operation_id: str,
        asset: str,
        destination: str,
        amount: int,
        source: str | None = None,
        fee: int = 0,
    ) -> str:
        self.before_send()
        return super().send(operation_id, asset, destination, amount, source, fee)


@dataclass
class Desk:
    ledger: InMemoryLedger
    ops: FakeOperationStore
    trades: FakeTradeStore
    bank: FakeBank
    lps: dict[str, FakeLiquidity]
    payouts: WatchedPayouts
    chain: FakeDepositObservations
    client_iban: str
    client: Client | None = None
    settlement_id: str = field(default_factory=lambda: f"st-{uuid.uuid4().hex[:8]}")

    async def trade(self, side: str, quantity: int, counterparty: str) -> TradeRecord:
        """A client's auto-accepted trade, made by the trade saga with one provider."""
        assert self.client is not None
        op_id = f"tr:{CLIENT}:{uuid.uuid4().hex[:8]}"
        requested(self.ops, op_id, "trade", CLIENT, "BTC", "bitcoin", quantity, CLIENT)
        req = TradeInput(
            operation_id=op_id,
            client_id=CLIENT,
            side=side,  # type: ignore[arg-type]
            asset="BTC",
            decimals=8,
            quantity=quantity,
            client_iban=self.client_iban,
            platform_iban=self.bank.platform_iban,
            counterparties=[counterparty],
            fee_bps=50,
            auto_accept=True,
            requested_by=CLIENT,
            requested_at=datetime.now(UTC),
        )
        handle = await self.client.start_workflow(
            TradeWorkflow.run, req, id=op_id, task_queue=QUEUE
        )
        result = await handle.result()
        assert result.state == "completed", result
        recorded = self.trades.get(op_id)
        assert recorded is not None
        return recorded

    async def settle(
        self, leg_timeout_seconds: int = 600, poll_seconds: int = 5
    ) -> WorkflowHandle[Any, Any]:
        assert self.client is not None
        req = SettlementInput(
            settlement_id=self.settlement_id,
            counterparties=sorted(self.lps),
            platform_iban=self.bank.platform_iban,
            leg_timeout_seconds=leg_timeout_seconds,
            poll_seconds=poll_seconds,
        )
        return await self.client.start_workflow(
            SettlementWorkflow.run, req, id=self.settlement_id, task_queue=QUEUE
        )

    async def instructed(self, *counterparties: str) -> None:
        """Wait (real time) until these providers have been handed their legs."""
        await until(
            lambda: all(self.settlement_id in self.lps[c].settlements for c in counterparties)
        )

    def legs(self, counterparty: str) -> dict[tuple[str, str], int]:
        state = self.lps[counterparty].settlements[self.settlement_id]
        return {(leg.asset, leg.payer): leg.amount for leg in state.legs}

    def provider_pays_fiat(self, counterparty: str) -> None:
        """The provider's EUR leg, to the platform's account under the settlement's
        end-to-end id (as its instructions say)."""
        lp = self.lps[counterparty]
        state = lp.settlements[self.settlement_id]
        assert state.confirmation is not None
        self.bank.transfer(
            f"lp-{uuid.uuid4().hex[:8]}",
            lp.iban,
            self.bank.platform_iban,
            self.legs(counterparty)[("EUR", "provider")],
            "EUR",
            state.confirmation.end_to_end_id,
        )

    async def provider_delivers_crypto(self, counterparty: str) -> None:
        """The provider's BTC leg: a transaction to the platform's address, final on chain,
        credited by the deposit saga (started as the router starts it), and reported by
        the provider with its transaction id."""
        assert self.client is not None
        lp, sid = self.lps[counterparty], self.settlement_id
        amount = self.legs(counterparty)[("BTC", "provider")]
        out = Output(
            tx_hash=uuid.uuid4().hex * 2,
            position="vout0",
            address=deposit_address(counterparty, "BTC"),
            account_id=accounts.settlement(counterparty, "BTC"),
            asset="BTC",
            amount=amount,
        )
        self.chain.bury(self.chain.mine(out))
        dep = DepositInput(
            chain="bitcoin",
            tx_hash=out.tx_hash,
            position=out.position,
            address=out.address,
            account_id=out.account_id,
            asset="BTC",
            amount=amount,
        )
        credited = await self.client.start_workflow(
            DepositWorkflow.run,
            dep,
            id=dep.operation_id,
            task_queue=QUEUE,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            start_signal="chain_event",
            start_signal_args=[DepositNudge(state="seen")],
        )
        assert (await credited.result()).state == "credited"
        state = lp.settlements[sid]
        lp.settlements[sid] = state.model_copy(
            update={
                "legs": [
                    leg.model_copy(update={"status": "delivered", "reference": out.tx_hash})
                    if (leg.asset, leg.payer) == ("BTC", "provider")
                    else leg
                    for leg in state.legs
                ]
            }
        )

    def balance(self, account: str) -> int:
        return self.ledger.balance(account).total

    def received(self, counterparty: str) -> int:
        """What the platform's account received from the provider in this settlement."""
        lp = self.lps[counterparty]
        return sum(
            e.amount
            for e in self.bank.statement(self.bank.platform_iban)
            if e.indicator == "CRDT" and e.counterparty_iban == lp.iban
        )

    def paid_by_platform(self, iban: str) -> int:
        return sum(
            e.amount
            for i, e in self.bank.entries
            if i == self.bank.platform_iban
            and e.indicator == "DBIT"
            and e.counterparty_iban == iban
        )

    def alerts(self) -> list[str]:
        return [e.type for topic, e in self.ops.outbox if topic == "custody.alerts.v1"]

    def steps(self) -> list[str]:
        return [s.step for s in self.ops.timeline(self.settlement_id)]


def at_the_desk(
    test_server: SagaServer,
    scenario: Callable[[Desk], Awaitable[None]],
    counterparties: tuple[str, ...] = ("lp-alpha", "lp-beta"),
    payouts: WatchedPayouts | None = None,
    registered: Callable[[FakeLiquidity], Ed25519PrivateKey] = lambda lp: lp.signing_key,
) -> Desk:
    """Run `scenario` with the trade, settlement and deposit sagas on one worker.
    `registered` says which key governance holds for each provider's confirmations."""
    ledger = books(BTC, CLIENT)
    ledger.submit(
        [
            Transfer(
                id="funding",
                debit_account=accounts.omnibus("BTC"),
                credit_account=accounts.client(CLIENT, "BTC"),
                asset="BTC",
                amount=10**8,
            )
        ]
    )
    ops = FakeOperationStore()
    ops.create_client(CLIENT, "Acme", "genesis")
    bank, client_iban = FakeBank(new_iban()), new_iban()
    bank.open(bank.platform_iban, amount=100_000 * EUR)
    bank.open(client_iban, amount=100_000 * EUR)
    lps = {}
    for name in counterparties:
        lps[name] = FakeLiquidity(
            name,
            ttl_seconds=QUOTE_TTL,
            iban=new_iban(),
            addresses={"BTC": f"sb1q{name.replace('-', '')}payout"},
        )
        bank.open(lps[name].iban, amount=100_000 * EUR)
    trades = FakeTradeStore(ops)
    chain = FakeDepositObservations()
    desk = Desk(ledger, ops, trades, bank, lps, payouts or WatchedPayouts(), chain, client_iban)
    keys = [RegisteredKey.of(name, registered(lp)) for name, lp in lps.items()]
    governance = StaticGovernance(counterparty_key_map={k.key_id: k for k in keys})
    settlements = SettlementActivities(
        ledger,
        ops,
        trades,
        bank,
        lps,
        desk.payouts,
        deposit_address,
        intents=FakeIntentStore(),
        fee_cap=lambda _asset: 10_000,
        governance=governance,
    )
    deposits = DepositActivities(ledger, ops, chain, no_screening_hits())
    activities: list[Callable[..., Any]] = [
        *TradeActivities(ledger, ops, trades, bank, lps).all(),
        *settlements.all(),
        *deposits.all(),
    ]

    async def go(client: Client) -> None:
        desk.client = client
        await scenario(desk)

    workflows = [TradeWorkflow, SettlementWorkflow, DepositWorkflow]
    test_server.run(workflows, activities, go, shared=SERVER)
    return desk


def test_a_netted_settlement_is_delivered_versus_payment_once_and_booked(
    test_server: SagaServer,
) -> None:
    seen: dict[str, Any] = {}

    async def scenario(d: Desk) -> None:
        # lp-alpha: the platform bought 0.003 and sold 0.005 BTC: it delivers 0.002 net
        # and is paid the difference of the notionals. lp-beta: it bought 0.002.
        bought = await d.trade("buy", 300_000, "lp-alpha")
        sold = await d.trade("sell", 500_000, "lp-alpha")
        beta = await d.trade("buy", 200_000, "lp-beta")
        seen["trades"] = (bought, sold, beta)
        handle = await d.settle()
        await d.instructed("lp-alpha", "lp-beta")
        seen["legs"] = {cp: d.legs(cp) for cp in d.lps}
        seen["sent_early"] = dict(d.payouts.sends)
        seen["paid_early"] = d.paid_by_platform(d.lps["lp-beta"].iban)
        d.payouts.before_send = lambda: seen.setdefault("fiat_in", d.received("lp-alpha"))
        d.provider_pays_fiat("lp-alpha")
        await d.provider_delivers_crypto("lp-beta")
        seen["result"] = await handle.result()
        await keep_history(handle, "settlement_settled")

    d = at_the_desk(test_server, scenario)
    bought, sold, beta = seen["trades"]
    result: SettlementResult = seen["result"]
    assert (result.state, result.settled, result.breaks) == (
        "settled",
        ["lp-alpha", "lp-beta"],
        [],
    )
    assert seen["legs"] == {
        "lp-alpha": {
            ("BTC", "platform"): 200_000,
            ("EUR", "provider"): sold.lp_notional - bought.lp_notional,
        },
        "lp-beta": {("BTC", "provider"): 200_000, ("EUR", "platform"): beta.lp_notional},
    }
    # Nothing of the platform's went before the providers' legs had arrived: lp-alpha's
    # EUR was in when its BTC was sent, lp-beta's BTC credited before it was paid.
    assert seen["sent_early"] == {} and seen["paid_early"] == 0
    assert seen["fiat_in"] == sold.lp_notional - bought.lp_notional
    beta_btc = d.ledger.history(accounts.settlement("lp-beta", "BTC"))
    (credited,) = [r for r in beta_btc if r.id.startswith("deposit:")]  # the deposit saga's
    beta_iban = d.lps["lp-beta"].iban
    (paid,) = [
        e for i, e in d.bank.entries if e.indicator == "DBIT" and e.counterparty_iban == beta_iban
    ]
    assert credited.recorded_at <= paid.booked_at
    alpha_btc = leg_operation(d.settlement_id, "lp-alpha", "BTC")
    assert d.payouts.sends == {alpha_btc: 1}
    assert d.payouts.paid == {"sb1qlpalphapayout": 200_000}
    assert d.paid_by_platform(d.lps["lp-beta"].iban) == beta.lp_notional  # once
    for cp in d.lps:
        assert d.balance(accounts.settlement(cp, "BTC")) == 0  # delivered both ways
    assert d.ledger.balance(accounts.network_fees("BTC")).debits_posted == d.payouts.fee
    assert d.trades.unsettled() == []
    assert {"settled:lp-alpha", "settled:lp-beta", "reconciled"} <= set(d.steps())
    assert d.alerts() == []


def test_a_confirmation_not_signed_by_the_registered_key_is_compensated_with_nothing_paid(
    test_server: SagaServer,
) -> None:
    seen: dict[str, Any] = {}

    async def scenario(d: Desk) -> None:
        await d.trade("sell", 400_000, "lp-alpha")
        handle = await d.settle()
        seen["result"] = await handle.result()
        await keep_history(handle, "settlement_refused")

    imposter = Ed25519PrivateKey.generate()
    d = at_the_desk(test_server, scenario, ("lp-alpha",), registered=lambda _lp: imposter)
    result: SettlementResult = seen["result"]
    assert (result.state, result.compensated) == ("compensated", ["lp-alpha"])
    assert d.payouts.sends == {} and d.paid_by_platform(d.lps["lp-alpha"].iban) == 0
    assert d.lps["lp-alpha"].settlements[d.settlement_id].status == "cancelled"
    assert len(d.trades.unsettled("lp-alpha")) == 1  # for the next settlement
    assert d.alerts() == [FAILED_ALERT]
    assert "compensated:lp-alpha" in d.steps()
    assert not any(s.startswith("instructed:") for s in d.steps())


def test_a_provider_that_does_not_deliver_in_time_is_compensated_with_nothing_paid(
    test_server: SagaServer,
) -> None:
    seen: dict[str, Any] = {}

    async def scenario(d: Desk) -> None:
        await d.trade("buy", 300_000, "lp-beta")
        handle = await d.settle(3600, poll_seconds=600)
        seen["result"] = await handle.result()  # the hour is skipped
        await keep_history(handle, "settlement_timed_out")

    d = at_the_desk(test_server, scenario, ("lp-beta",))
    result: SettlementResult = seen["result"]
    assert (result.state, result.compensated, result.breaks) == ("compensated", ["lp-beta"], [])
    assert d.paid_by_platform(d.lps["lp-beta"].iban) == 0
    assert d.lps["lp-beta"].settlements[d.settlement_id].status == "cancelled"
    assert len(d.trades.unsettled("lp-beta")) == 1
    assert d.alerts() == [FAILED_ALERT]
    (compensated,) = [s for s in d.ops.timeline(d.settlement_id) if s.step == "compensated:lp-beta"]
    missing = compensated.detail["missing"]
    assert isinstance(missing, list) and any("BTC: not delivered" in str(m) for m in missing)


def test_a_platform_leg_that_reverts_stays_owed_alerted_and_a_break(
    test_server: SagaServer,
) -> None:
    seen: dict[str, Any] = {}

    async def scenario(d: Desk) -> None:
        await d.trade("sell", 400_000, "lp-alpha")
        handle = await d.settle()
        await d.instructed("lp-alpha")
        d.provider_pays_fiat("lp-alpha")
        seen["result"] = await handle.result()

    d = at_the_desk(
        test_server, scenario, ("lp-alpha",), payouts=WatchedPayouts(outcome="reverted")
    )
    result: SettlementResult = seen["result"]
    assert (result.state, result.compensated) == ("compensated", ["lp-alpha"])
    assert d.payouts.sends == {leg_operation(d.settlement_id, "lp-alpha", "BTC"): 1}
    assert d.balance(accounts.settlement("lp-alpha", "BTC")) == 400_000  # still owed to it
    assert d.ledger.balance(accounts.network_fees("BTC")).debits_posted == d.payouts.fee
    ((asset, ledger, expected),) = [(b.asset, b.ledger, b.expected) for b in result.breaks]
    assert (asset, ledger, expected) == ("BTC", 400_000, 0)
    assert sorted(d.alerts()) == sorted([FAILED_ALERT, BREAK_ALERT])
