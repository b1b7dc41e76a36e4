"""The trade saga in seconds: its real workflow and activities over the fakes of the
bank, the provider and the stores, on the time-skipping test server. An auto-accepted
buy is executed once, the client charged what was quoted and credited the asset; a
quote nobody accepts expires with nothing held or charged; a buy the client cannot pay
is refused at the hold; a capture the bank keeps failing is alerted with its error code
and paid once the bank is back; a second acceptance is refused with its code."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError

from sagas import accounts
from sagas.errors import BankInsufficientFunds, DependencyUnavailable, InvalidState, QuoteExpired
from sagas.ledger import BTC
from sagas.steps import code_of, detail_of
from sagas.trade import Acceptance, TradeInput, TradeResult
from sagas.trade.activities import TradeActivities
from sagas.trade.workflows import TradeWorkflow
from tests.fakes import FakeOperationStore, FakeTradeStore, InMemoryLedger
from tests.fakes_trading import FakeBank, FakeLiquidity
from tests.sagas.conftest import QUEUE, SagaServer, books, keep_history, requested
from tests.simulators import new_iban

CLIENT = "acme"
EUR = 100  # cents


@dataclass
class Market:
    ledger: InMemoryLedger
    ops: FakeOperationStore
    trades: FakeTradeStore
    bank: FakeBank
    lp: FakeLiquidity
    client_iban: str
    client: Client | None = None

    def btc(self) -> int:
        return self.ledger.balance(accounts.client(CLIENT, "BTC")).available

    def booked(self, iban: str) -> int:
        return self.bank.accounts[iban][1]

    async def buy(self, quantity: int, auto_accept: bool, record: str = "") -> TradeResult:
        """`record`: the replay fixture to keep its history as (keep_history)."""
        handle = await self.start(quantity, auto_accept)
        result = await handle.result()
        if record:
            await keep_history(handle, record)
        return result

    async def start(
        self, quantity: int, auto_accept: bool
    ) -> WorkflowHandle[TradeWorkflow, TradeResult]:
        assert self.client is not None
        op_id = f"tr:{CLIENT}:{uuid.uuid4().hex[:8]}"
        requested(self.ops, op_id, "trade", CLIENT, "BTC", "bitcoin", quantity, CLIENT)
        now = datetime.now(UTC)
        req = TradeInput(
            operation_id=op_id,
            client_id=CLIENT,
            side="buy",
            asset="BTC",
            decimals=8,
            quantity=quantity,
            client_iban=self.client_iban,
            platform_iban=self.bank.platform_iban,
            counterparties=[self.lp.counterparty],
            fee_bps=50,
            auto_accept=auto_accept,
            accept_seconds=30,
            requested_by=CLIENT,
            requested_at=now,
        )
        return await self.client.start_workflow(TradeWorkflow.run, req, id=op_id, task_queue=QUEUE)


class FailingBank(FakeBank):
    """The fake bank whose captures fail (unavailable) the first `failures` times."""

    def __init__(self, platform_iban: str, failures: int) -> None:
        super().__init__(platform_iban)
        self.failures = failures
        self.failed: list[str] = []

    def capture(self, key: str, hold_id: str, *args: Any, **kwargs: Any) -> Any:
        if len(self.failed) < self.failures:
            self.failed.append(key)
            raise DependencyUnavailable("the bank answered 503")
        return super().capture(key, hold_id, *args, **kwargs)


def trade_in(
    test_server: SagaServer, scenario: Any, cash: int = 10_000 * EUR, bank: FakeBank | None = None
) -> Market:
    ledger = books(BTC, CLIENT)
    ops = FakeOperationStore()
    ops.create_client(CLIENT, "Acme", "genesis")
    bank = bank or FakeBank(new_iban())
    lp, client_iban = FakeLiquidity("lp-fast"), new_iban()
    bank.open(bank.platform_iban)
    bank.open(client_iban, amount=cash)
    bank.open(lp.instructions().iban)
    market = Market(ledger, ops, FakeTradeStore(ops), bank, lp, client_iban)
    acts = TradeActivities(ledger, ops, market.trades, bank, {lp.counterparty: lp})

    async def go(client: Client) -> None:
        market.client = client
        await scenario(market)

    test_server.run([TradeWorkflow], acts.all(), go)
    return market


def test_an_auto_accepted_buy_is_executed_once_and_booked(test_server: SagaServer) -> None:
    seen: dict[str, TradeResult] = {}

    async def scenario(m: Market) -> None:
        seen["result"] = await m.buy(100_000, auto_accept=True, record="trade_completed")

    market = trade_in(test_server, scenario)
    result = seen["result"]
    assert result.state == "completed", result
    assert result.quantity == 100_000 and result.client_fiat is not None
    assert market.btc() == 100_000
    assert len(market.lp.orders) == 1  # executed once at the provider
    assert market.booked(market.client_iban) == 10_000 * EUR - result.client_fiat
    recorded = market.trades.get(result.operation_id)
    assert recorded is not None and recorded.quantity == 100_000


def test_a_quote_nobody_accepts_expires_with_nothing_held_or_charged(
    test_server: SagaServer,
) -> None:
    seen: dict[str, TradeResult] = {}

    async def scenario(m: Market) -> None:
        # The acceptance window passes, skipped.
        seen["result"] = await m.buy(100_000, auto_accept=False, record="trade_expired")

    market = trade_in(test_server, scenario)
    assert (seen["result"].state, seen["result"].error_code) == ("expired", QuoteExpired.code)
    assert market.lp.orders == {}
    assert market.btc() == 0
    assert market.booked(market.client_iban) == 10_000 * EUR
    assert all(h["status"] != "active" for h in market.bank.holds.values())


def test_a_buy_the_client_cannot_pay_is_refused_at_the_hold(test_server: SagaServer) -> None:
    seen: dict[str, TradeResult] = {}

    async def scenario(m: Market) -> None:
        seen["result"] = await m.buy(100_000, auto_accept=True)

    market = trade_in(test_server, scenario, cash=1 * EUR)
    assert seen["result"].state == "rejected", seen["result"]
    assert seen["result"].error_code == BankInsufficientFunds.code  # the bank refused the hold
    assert market.lp.orders == {} and market.btc() == 0
    assert market.booked(market.client_iban) == 1 * EUR


def test_a_capture_failing_for_long_is_alerted_with_its_code_and_paid_once_back(
    test_server: SagaServer,
) -> None:
    seen: dict[str, TradeResult] = {}
    # More failures than the first round of attempts (4), then the bank is back.
    bank = FailingBank(new_iban(), failures=6)

    async def scenario(m: Market) -> None:
        seen["result"] = await m.buy(100_000, auto_accept=True)

    market = trade_in(test_server, scenario, bank=bank)
    result = seen["result"]
    assert result.state == "completed", result
    assert len(bank.failed) == 6
    steps = {s.step: s.detail for s in market.ops.timeline(result.operation_id)}
    # The code crossed Temporal in the failure's details, not parsed out of its text.
    assert steps["payment_delayed"]["error_code"] == DependencyUnavailable.code
    assert result.client_fiat is not None
    assert market.booked(market.client_iban) == 10_000 * EUR - result.client_fiat  # once


def test_a_second_acceptance_is_refused_with_its_code_in_the_details(
    test_server: SagaServer,
) -> None:
    seen: dict[str, Any] = {}

    async def scenario(m: Market) -> None:
        handle = await m.start(100_000, auto_accept=False)
        await handle.execute_update(
            TradeWorkflow.accept, Acceptance(accepted_by=CLIENT), id="first"
        )
        try:
            await handle.execute_update(
                TradeWorkflow.accept, Acceptance(accepted_by=CLIENT), id="second"
            )
        except WorkflowUpdateFailedError as exc:
            seen["refused"] = exc
        seen["result"] = await handle.result()

    trade_in(test_server, scenario)
    refused = seen["refused"]
    # What the API reads (services/api/trading.py): the type, the code and the detail.
    assert getattr(refused.cause, "type", None) == "InvalidState"
    assert code_of(refused) == InvalidState.code
    assert detail_of(refused).startswith("not awaiting acceptance (stage ")
    assert seen["result"].state == "completed", seen["result"]
