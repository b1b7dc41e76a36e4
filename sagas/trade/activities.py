"""The trade saga's activities: each idempotent by operation id (its bank instructions
carry `<operation>:<step>` keys, its order the operation id as client order id), each
recording its step with the events that report it.

`pause` is the crash tests' fault-injection point (services/worker --pause-at): called
with a step's name after the step's effect, before the activity returns.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from temporalio import activity

from sagas import accounts
from sagas.errors import (
    CustodyError,
    DependencyUnavailable,
    FillMismatch,
    HoldNotActive,
    OrderUnknown,
    QuoteInvalid,
)
from sagas.events import Envelope
from sagas.ledger import PostPending, Transfer, VoidPending
from sagas.liquidity import Fill, Quote, pair
from sagas.operations import step_event_id
from sagas.payments import pay_once
from sagas.ports import CoreBanking, Ledger, Liquidity, OperationStore, TradeStore
from sagas.records import RecordedSteps, step_event
from sagas.steps import typed_errors
from sagas.topics import ALERTS
from sagas.trade import (
    Acceptance,
    Ended,
    Executed,
    Held,
    Paid,
    PaymentFailure,
    Priced,
    TradeInput,
    TradeRecord,
    suffix,
)
from sagas.trade.events import (
    FILL_ALERT,
    PAYMENT_ALERT,
    TradeFillMismatch,
    TradePaymentDelayed,
    TradeStep,
    event_type,
)
from sagas.trade.fills import fill_differences
from sagas.trade.pricing import BPS, Settlement, settle, within_rounding

SOURCE = "/custody/trade"
log = logging.getLogger("custody.trade")


def end_to_end_id(operation_id: str) -> str:
    """The ISO 20022 end-to-end id of a trade's fiat leg: 35 characters at most, the same
    on every retry, traceable to the operation (the remittance information names it)."""
    return "CUS" + hashlib.sha256(operation_id.encode()).hexdigest()[:32]


def event(req: TradeInput, step: str, **data: Any) -> tuple[str, Envelope]:
    payload = TradeStep(
        operation_id=req.operation_id,
        client_id=req.client_id,
        side=req.side,
        asset=req.asset,
        currency=req.currency,
        **data,
    )
    subject = accounts.client(req.client_id, req.asset)
    return step_event(
        req.operation_id, step, payload, source=SOURCE, event_type=event_type, subject=subject
    )


def priced_fields(priced: Priced) -> dict[str, Any]:
    q = priced.quote
    assert q is not None
    return {
        "counterparty": q.counterparty,
        "quote_id": q.quote_id,
        "quantity": str(q.quantity),
        "price": str(q.price),
        "lp_notional": str(q.notional),
        "fee": str(priced.fee),
        "client_fiat": str(priced.client_fiat),
        "expires_at": q.expires_at.isoformat(),
    }


def reserve_id(operation_id: str, round_: int = 1) -> str:
    return f"{operation_id}:reserve{suffix(round_)}"


class TradeActivities(RecordedSteps):
    def __init__(
        self,
        ledger: Ledger,
        operations: OperationStore,
        trades: TradeStore,
        bank: CoreBanking,
        providers: Mapping[str, Liquidity],
        pause: Callable[[str], None] = lambda _step: None,
        fill_tolerance_bps: int = 10,
    ) -> None:
        self._fill_tolerance_bps = fill_tolerance_bps
        self._ledger = ledger
        self._ops = operations
        self._trades = trades
        self._bank = bank
        self._providers = providers
        self._pause = pause

    def all(self) -> list[Callable[..., Any]]:
        """Every activity of the saga, as a worker registers them."""
        return [
            self.quote,
            self.accept,
            self.hold,
            self.execute,
            self.book,
            self.pay,
            self.alert_payment,
            self.release,
            self.complete,
            self.end,
        ]

    # --- quote ------------------------------------------------------------------------
    @activity.defn(name="trade.quote")
    def quote(self, req: TradeInput, round_: int) -> Priced:
        """The best firm quote of the providers, checked and priced with the platform's
        fee. Recorded once per round: a retry returns the quote the client was shown."""
        step = f"quoted{suffix(round_)}"
        recorded = self._recorded(req.operation_id, step)
        if recorded is not None:
            return Priced.model_validate(recorded)
        quotes: list[Quote] = []
        failures: list[str] = []
        providers = [self._providers.get(name) for name in req.counterparties]
        # Asked at once: a slow provider costs its own timeout, not the sum of all.
        with ThreadPoolExecutor(max_workers=len(providers)) as pool:
            asked = [
                (name, pool.submit(self._ask, p, req)) if p is not None else (name, None)
                for name, p in zip(req.counterparties, providers, strict=True)
            ]
            for name, future in asked:
                if future is None:
                    failures.append(f"{name}: not configured")
                    continue
                try:
                    quotes.append(future.result())
                except CustodyError as exc:
                    failures.append(f"{name}: {exc.code} {exc.detail}")
        if not quotes:
            if any("CUS-9001" in f for f in failures):
                raise DependencyUnavailable("; ".join(failures))  # try the providers again
            return self._refuse(req, QuoteInvalid.code, "; ".join(failures) or "no quote")
        best = self._best(req, quotes)
        s = settle(req.side, best.quantity, best.price, req.decimals, req.fee_bps)
        if req.budget is not None and s.client_fiat > req.budget:
            return self._refuse(req, QuoteInvalid.code, f"{s.client_fiat} exceeds the budget")
        priced = Priced(quote=best, fee=s.fee, client_fiat=s.client_fiat, round=round_)
        self._ops.advance(
            req.operation_id,
            step,
            [event(req, step, **priced_fields(priced))],
            detail=priced.model_dump(mode="json"),
            state="quoted",
            amount=str(best.quantity),
        )
        self._pause("quote")
        return priced

    def _ask(self, provider: Liquidity, req: TradeInput) -> Quote:
        market = pair(req.asset, req.currency)
        if req.budget is not None:
            # The provider's notional plus the fee (rounded up) fits the budget exactly
            # when the notional is at most budget * BPS / (BPS + fee): see pricing.py.
            notional = req.budget * BPS // (BPS + req.fee_bps)
            q = provider.quote(market, req.side, notional=notional)
        else:
            q = provider.quote(market, req.side, quantity=req.quantity)
            if q.quantity != req.quantity:
                raise QuoteInvalid(f"{provider.counterparty} quoted {q.quantity}")
        if q.quantity <= 0 or not within_rounding(
            req.side, q.quantity, q.price, req.decimals, q.notional
        ):
            raise QuoteInvalid(
                f"{provider.counterparty}: {q.notional} is not {q.quantity} x {q.price} rounded"
            )
        return q

    @staticmethod
    def _best(req: TradeInput, quotes: list[Quote]) -> Quote:
        if req.side == "sell":
            return max(quotes, key=lambda q: (q.notional, -q.price))
        if req.budget is not None:
            return max(quotes, key=lambda q: (q.quantity, -q.notional))
        return min(quotes, key=lambda q: (q.notional, q.price))

    def _refuse(self, req: TradeInput, code: str, detail: str) -> Priced:
        self._ops.advance(
            req.operation_id,
            "rejected",
            [event(req, "rejected", error_code=code, detail=detail)],
            detail={"error_code": code, "detail": detail},
            state="rejected",
            error_code=code,
        )
        return Priced(error_code=code, detail=detail)

    @activity.defn(name="trade.accept")
    def accept(self, req: TradeInput, acceptance: Acceptance, round_: int) -> None:
        step = f"accepted{suffix(round_)}"
        self._ops.advance(
            req.operation_id,
            step,
            [event(req, step, accepted_by=acceptance.accepted_by)],
            detail=acceptance.model_dump(),
            state="accepted",
        )
        self._pause("accept")

    # --- the client's side: fiat hold (buy) or asset reservation (sell) -------------------
    @activity.defn(name="trade.hold")
    def hold(self, req: TradeInput, priced: Priced) -> Held:
        """Buy: hold what the client pays at the bank. Sell: reserve the asset quantity
        in the ledger. A refusal (insufficient funds) is recorded and ends the saga."""
        assert priced.quote is not None
        refused = self._recorded(req.operation_id, "rejected")
        if refused is not None:
            return Held(error_code=str(refused["error_code"]), detail=str(refused["detail"]))
        try:
            if req.side == "buy":
                hold = self._bank.hold(
                    f"{req.operation_id}:hold{suffix(priced.round)}",
                    req.client_iban,
                    priced.client_fiat,
                    req.currency,
                    req.hold_ttl_seconds,
                    end_to_end_id(req.operation_id),
                    f"{req.operation_id} buy {req.asset}",
                )
                hold_id = hold.hold_id
                step = f"held{suffix(priced.round)}"
            else:
                self._ledger.open_account(
                    accounts.settlement_account(priced.quote.counterparty, req.asset)
                )
                self._ledger.submit(
                    [
                        Transfer(
                            id=reserve_id(req.operation_id, priced.round),
                            debit_account=accounts.client(req.client_id, req.asset),
                            credit_account=accounts.settlement(
                                priced.quote.counterparty, req.asset
                            ),
                            asset=req.asset,
                            amount=priced.quote.quantity,
                            pending=True,
                            reference=req.operation_id,
                        )
                    ]
                )
                hold_id = reserve_id(req.operation_id, priced.round)
                step = f"reserved{suffix(priced.round)}"
        except CustodyError as exc:
            if exc.transient:
                raise
            self._refuse(req, exc.code, exc.detail)
            return Held(error_code=exc.code, detail=exc.detail)
        self._pause("hold")
        self._ops.advance(
            req.operation_id,
            step,
            [event(req, step, hold_id=hold_id, client_fiat=str(priced.client_fiat))],
            detail={"hold_id": hold_id},
            state=step,
        )
        return Held(hold_id=hold_id)

    # --- the irreversible step ------------------------------------------------------------
    @activity.defn(name="trade.execute")
    def execute(self, req: TradeInput, priced: Priced) -> Executed:
        """Trade with the provider, once: first ask it whether the order exists (a lost
        answer, a crash after sending), and only if it never saw it send it."""
        assert priced.quote is not None
        provider = self._providers[priced.quote.counterparty]
        order_id = req.operation_id + suffix(priced.round)
        try:
            try:
                fill = provider.order(order_id)
            except OrderUnknown:
                fill = provider.execute(priced.quote.quote_id, order_id)
        except CustodyError as exc:
            if exc.transient:
                raise  # unknown fate: the retry asks first
            return Executed(error_code=exc.code, detail=exc.detail)
        self._pause("execute")
        if self._fill_mismatch(req, priced, fill):
            # Executed at the provider, but not the trade the client accepted: nothing is
            # booked, the hold is released (the saga ends rejected), operators resolve
            # the provider's trade with it (docs/trading.md).
            return Executed(
                error_code=FillMismatch.code,
                detail="the provider's fill did not match the accepted quote; nothing was "
                "booked or charged",
            )
        self._ops.advance(
            req.operation_id,
            "executed",
            [
                event(
                    req,
                    "executed",
                    trade_id=fill.trade_id,
                    counterparty=fill.counterparty,
                    quantity=str(fill.quantity),
                    price=str(fill.price),
                    lp_notional=str(fill.notional),
                )
            ],
            detail=fill.model_dump(mode="json"),
            state="executed",
        )
        return Executed(fill=fill)

    def _fill_mismatch(self, req: TradeInput, priced: Priced, fill: Fill) -> bool:
        """Whether the fill differs from the accepted quote; if so it is recorded with the
        alert for operators (once), never booked."""
        quote = priced.quote
        assert quote is not None
        order_id = req.operation_id + suffix(priced.round)
        differences = fill_differences(
            quote, fill, order_id, priced.client_fiat, self._fill_tolerance_bps
        )
        if not differences:
            return False
        log.error(
            "%s: fill %s differs from quote %s: %s", req.operation_id, fill, quote, differences
        )
        alert = Envelope(
            id=step_event_id(req.operation_id, "fill_mismatch"),
            source=SOURCE,
            type=FILL_ALERT,
            subject=req.operation_id,
            data=TradeFillMismatch(
                operation_id=req.operation_id,
                client_id=req.client_id,
                counterparty=quote.counterparty,
                client_order_id=order_id,
                trade_id=fill.trade_id,
                side=req.side,
                asset=req.asset,
                quoted_quantity=str(quote.quantity),
                filled_quantity=str(fill.quantity),
                quoted_notional=str(quote.notional),
                filled_notional=str(fill.notional),
                differences=differences,
                action="nothing was booked or charged to the client: have the provider "
                "cancel its trade, or take it onto the platform's own books",
            ).model_dump(mode="json"),
        )
        self._ops.advance(
            req.operation_id,
            "fill_mismatch",
            [(ALERTS.name, alert)],
            detail={
                "error_code": FillMismatch.code,
                "trade_id": fill.trade_id,
                "fill": fill.model_dump(mode="json"),
                "differences": differences,
            },
        )
        return True

    # --- the ledger ---------------------------------------------------------------------
    @activity.defn(name="trade.book")
    def book(self, req: TradeInput, priced: Priced, fill: Fill) -> TradeRecord:
        """Buy: the client is owed the asset, the provider owes it to the platform until
        settlement. Sell: the reservation is posted to the provider's account. The trade
        is stored for settlement with its fiat legs."""
        quoted = priced.quote
        assert quoted is not None  # a trade reaches execution only on an accepted quote
        if self._fill_mismatch(req, priced, fill):
            # Only a fill executed before `execute` checked fills gets here: never booked;
            # the saga waits at `executed` (alerted) for an operator.
            raise FillMismatch(f"{fill.trade_id} does not match quote {quoted.quote_id}")
        # The client is charged (or paid) exactly what they accepted, never a price the
        # provider's reply names; the platform's fee absorbs what the tolerance lets
        # through (never below zero: the fill check refuses that).
        client = priced.client_fiat
        fee_taken = client - fill.notional if req.side == "buy" else fill.notional - client
        s = Settlement(req.side, fill.quantity, fill.notional, fee_taken, client)
        if req.side == "buy":
            self._ledger.open_account(accounts.settlement_account(fill.counterparty, req.asset))
            self._ledger.submit(
                [
                    Transfer(
                        id=f"{req.operation_id}:book",
                        debit_account=accounts.settlement(fill.counterparty, req.asset),
                        credit_account=accounts.client(req.client_id, req.asset),
                        asset=req.asset,
                        amount=fill.quantity,
                        reference=fill.trade_id,
                    )
                ]
            )
        else:
            self._ledger.submit(
                [
                    PostPending(
                        id=f"{req.operation_id}:book",
                        pending_id=reserve_id(req.operation_id, priced.round),
                        amount=fill.quantity,
                    )
                ]
            )
        self._pause("book")
        trade = self._trades.record(
            TradeRecord(
                operation_id=req.operation_id,
                client_id=req.client_id,
                side=req.side,
                asset=req.asset,
                currency=req.currency,
                counterparty=fill.counterparty,
                client_order_id=fill.client_order_id,
                quote_id=fill.quote_id,
                trade_id=fill.trade_id,
                price=fill.price,
                quantity=fill.quantity,
                lp_notional=fill.notional,
                fee=s.fee,
                client_fiat=s.client_fiat,
                executed_at=fill.executed_at,
            )
        )
        self._ops.advance(
            req.operation_id,
            "booked",
            [
                event(
                    req,
                    "booked",
                    trade_id=fill.trade_id,
                    quantity=str(fill.quantity),
                    lp_notional=str(fill.notional),
                    fee=str(s.fee),
                    client_fiat=str(s.client_fiat),
                )
            ],
            detail={"trade_id": fill.trade_id, "client_fiat": str(s.client_fiat)},
            state="booked",
            amount=str(fill.quantity),
        )
        return trade

    # --- the fiat leg ---------------------------------------------------------------------
    @activity.defn(name="trade.pay")
    def pay(self, req: TradeInput, trade: TradeRecord, hold_id: str | None) -> Paid:
        """The fiat leg (`_pay`); a platform error leaves it with its code in the details,
        for the saga's alert (sagas/steps.py `typed_errors`)."""
        with typed_errors():
            return self._pay(req, trade, hold_id)

    def _pay(self, req: TradeInput, trade: TradeRecord, hold_id: str | None) -> Paid:
        """Buy: capture the client's payment from the hold (partially: the rest of the hold
        goes back); if the hold lapsed, collect it by transfer. Sell: pay the proceeds
        from the platform's account. Paid once: the capture's key never changes, and a
        transfer's key changes only after the bank stated that it refused the previous
        one; before sending, the bank is asked about the key (sagas/payments.py)."""
        e2e = end_to_end_id(req.operation_id)
        info = f"{req.operation_id} {req.side} {trade.quantity} {req.asset} trade {trade.trade_id}"
        indicator = "DBIT" if req.side == "buy" else "CRDT"
        # A second witness only (statements may lag): it also sees a payment made under
        # the per-attempt keys of earlier versions of this activity.
        booked = [
            e
            for e in self._bank.statement(req.client_iban, end_to_end_id=e2e)
            if e.indicator == indicator
        ]
        if booked:  # paid by an earlier attempt whose answer was lost
            self._pause("capture")
            return Paid(payment_id=f"entry-{booked[0].entry_id}", amount=booked[0].amount)
        if req.side == "buy":
            assert hold_id is not None
            try:
                payment = self._bank.capture(
                    f"{req.operation_id}:capture",
                    hold_id,
                    trade.client_fiat,
                    req.platform_iban,
                    e2e,
                    info,
                )
            except HoldNotActive:
                hold = self._bank.get_hold(hold_id)
                if hold.status == "captured":
                    raise  # captured under another key: never by this saga; look, don't pay
                if hold.status == "active":  # the amount exceeds it: give it back first
                    self._bank.release(f"{req.operation_id}:release-hold", hold_id)
                payment = pay_once(
                    self._bank,
                    self._ops,
                    req.operation_id,
                    "collect",
                    f"{req.operation_id}:collect",
                    lambda key: self._bank.transfer(
                        key,
                        req.client_iban,
                        req.platform_iban,
                        trade.client_fiat,
                        req.currency,
                        e2e,
                        info,
                    ),
                )
        else:
            payment = pay_once(
                self._bank,
                self._ops,
                req.operation_id,
                "credit",
                f"{req.operation_id}:credit",
                lambda key: self._bank.credit(
                    key, req.client_iban, trade.client_fiat, req.currency, e2e, info
                ),
            )
        self._pause("capture")
        return Paid(payment_id=payment.payment_id, amount=payment.amount)

    @activity.defn(name="trade.alert_payment")
    def alert_payment(
        self, req: TradeInput, trade: TradeRecord, error: str | PaymentFailure
    ) -> None:
        """`error`: the failure, its text and code (sagas/steps.py `code_of`). Three
        arguments, as before the code was handed over: an alert a saga scheduled then
        (with the text alone, a string) still decodes on this worker (the SDK decodes
        without the type hints when the count of arguments differs), and has no code."""
        failure = error if isinstance(error, PaymentFailure) else PaymentFailure(detail=error)
        error_code = failure.error_code
        alert = Envelope(
            id=step_event_id(req.operation_id, "payment_delayed"),
            source=SOURCE,
            type=PAYMENT_ALERT,
            subject=req.operation_id,
            data=TradePaymentDelayed(
                operation_id=req.operation_id,
                client_id=req.client_id,
                side=req.side,
                amount=str(trade.client_fiat),
                error_code=error_code,
                detail=failure.detail[:500],
                action="the saga keeps retrying; fix the bank side and it completes",
            ).model_dump(mode="json"),
        )
        self._ops.advance(
            req.operation_id,
            "payment_delayed",
            # The client sees that the payment is late, not the bank's words (they may name
            # the platform's account); the alert on the operators' topic has them.
            [
                (ALERTS.name, alert),
                event(req, "payment_delayed", detail="the bank payment is delayed"),
            ],
            detail={"error_code": error_code or "unknown"},
            state="payment_delayed",
        )

    @activity.defn(name="trade.complete")
    def complete(self, req: TradeInput, trade: TradeRecord, paid: Paid) -> None:
        self._ops.advance(
            req.operation_id,
            "completed",
            [
                event(
                    req,
                    "completed",
                    trade_id=trade.trade_id,
                    counterparty=trade.counterparty,
                    quantity=str(trade.quantity),
                    price=str(trade.price),
                    lp_notional=str(trade.lp_notional),
                    fee=str(trade.fee),
                    client_fiat=str(trade.client_fiat),
                    payment_id=paid.payment_id,
                    end_to_end_id=end_to_end_id(req.operation_id),
                )
            ],
            detail={"payment_id": paid.payment_id, "client_fiat": str(trade.client_fiat)},
            state="completed",
        )

    # --- compensation ---------------------------------------------------------------------
    @activity.defn(name="trade.release")
    def release(self, req: TradeInput, hold_id: str, round_: int) -> None:
        """Give back a round's bank hold (buy) or ledger reservation (sell)."""
        sfx = suffix(round_)
        if req.side == "buy":
            self._bank.release(f"{req.operation_id}:release{sfx}", hold_id)
        else:
            self._ledger.submit(
                [VoidPending(id=f"{req.operation_id}:void{sfx}", pending_id=hold_id)]
            )
        self._ops.advance(
            req.operation_id,
            f"released{sfx}",
            [event(req, f"released{sfx}", hold_id=hold_id)],
            detail={"hold_id": hold_id},
        )

    @activity.defn(name="trade.end")
    def end(self, req: TradeInput, ended: Ended) -> None:
        """End before execution: give back what was held, record why."""
        if ended.hold_id is not None:
            self.release(req, ended.hold_id, ended.round)
        self._ops.advance(
            req.operation_id,
            ended.state,
            [event(req, ended.state, error_code=ended.error_code, detail=ended.detail)],
            detail={"error_code": ended.error_code, "detail": ended.detail},
            state=ended.state,
            error_code=ended.error_code,
        )
