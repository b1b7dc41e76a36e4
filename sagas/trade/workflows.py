"""The trade saga as a Temporal workflow: deterministic, every effect in an activity.

The client accepts a quote with the `accept` update (validated: only while quoted and
before the deadline, the earlier of the quote's expiry and the platform's acceptance
window). An auto-accepted trade whose quote went stale before execution is quoted
again (MAX_ROUNDS). After execution the saga only moves forward: the fiat leg is retried, with an
alert to operators after a few failures, until it is done.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from sagas.errors import InvalidState, QuoteExpired, QuoteInvalid
    from sagas.steps import PAY_FIRST, PAY_PATIENT, QUOTE, VENUE, code_of, crossing, step
    from sagas.trade import (
        MAX_ROUNDS,
        WORKFLOW,
        Acceptance,
        Ended,
        Ending,
        Executed,
        Held,
        Paid,
        PaymentFailure,
        Priced,
        TradeInput,
        TradeRecord,
        TradeResult,
        TradeView,
    )
    from sagas.trade.activities import TradeActivities as A


@workflow.defn(name=WORKFLOW)
class TradeWorkflow:
    def __init__(self) -> None:
        self._stage = "requested"
        self._priced: Priced | None = None
        self._acceptance: Acceptance | None = None
        self._accept_by: datetime | None = None

    @workflow.query
    def view(self) -> TradeView:
        p = self._priced
        return TradeView(
            stage=self._stage,
            quote=p.quote if p else None,
            fee=p.fee if p else 0,
            client_fiat=p.client_fiat if p else 0,
            accept_by=self._accept_by,
        )

    @workflow.update
    async def accept(self, acceptance: Acceptance) -> TradeView:
        # The API shows `quoted` as soon as the quote is recorded, a moment before this
        # workflow has taken the activity's result: wait for it.
        await workflow.wait_condition(lambda: self._stage != "requested")
        self._check_acceptance()
        self._acceptance = acceptance
        return self.view()

    @accept.validator
    def _validate_acceptance(self, acceptance: Acceptance) -> None:
        self._check_acceptance(early=True)

    def _check_acceptance(self, early: bool = False) -> None:
        waiting = self._stage == "quoted" or (early and self._stage == "requested")
        if not waiting or self._acceptance is not None:
            raise crossing(
                InvalidState(f"not awaiting acceptance (stage {self._stage})"), non_retryable=True
            )
        if self._accept_by is not None and workflow.now() >= self._accept_by:
            raise crossing(
                QuoteExpired(f"the quote expired at {self._accept_by.isoformat()}"),
                non_retryable=True,
            )

    @workflow.run
    async def run(self, req: TradeInput) -> TradeResult:
        for round_ in range(1, MAX_ROUNDS + 1):
            try:
                priced = await step(A.quote, req, round_, profile=QUOTE)
            except ActivityError:
                # No provider answered for minutes: never trade long after the request.
                return await self._end(
                    req, "rejected", QuoteInvalid.code, "no provider quoted in time", None, round_
                )
            if priced.quote is None:
                self._stage = "rejected"
                return TradeResult(
                    operation_id=req.operation_id,
                    state="rejected",
                    error_code=priced.error_code,
                    detail=priced.detail,
                )
            self._priced = priced
            if round_ == 1:
                ended = await self._acceptance_of(req, priced)
                if ended is not None:
                    return ended
            last = round_ == MAX_ROUNDS
            if req.auto_accept and not last and priced.quote.expires_at <= workflow.now():
                continue  # stale already (a restarted worker): quote again, hold nothing
            assert self._acceptance is not None
            await step(A.accept, req, self._acceptance, round_, profile=VENUE)
            self._stage = "accepted"
            held = await step(A.hold, req, priced, profile=VENUE)
            if held.hold_id is None:  # refused (insufficient funds): recorded, nothing held
                self._stage = "rejected"
                return TradeResult(
                    operation_id=req.operation_id,
                    state="rejected",
                    error_code=held.error_code,
                    detail=held.detail,
                )
            self._stage = "held" if req.side == "buy" else "reserved"
            executed = await step(A.execute, req, priced, profile=VENUE)
            if executed.fill is not None:
                return await self._settle_client(req, priced, held, executed)
            stale = executed.error_code == QuoteExpired.code
            if stale and req.auto_accept and not last:
                # Compensate the round: give its hold back, then quote again.
                await step(A.release, req, held.hold_id, round_, profile=VENUE)
                continue
            state: Ending = "expired" if stale else "rejected"
            return await self._end(
                req, state, executed.error_code, executed.detail, held.hold_id, round_
            )
        raise AssertionError("unreachable: the last round ends the saga")

    async def _acceptance_of(self, req: TradeInput, priced: Priced) -> TradeResult | None:
        """Wait for the client's acceptance of the first quote (or take it as given)."""
        assert priced.quote is not None
        accept_by = min(
            priced.quote.expires_at, workflow.now() + timedelta(seconds=req.accept_seconds)
        )
        self._accept_by = accept_by
        self._stage = "quoted"
        if req.auto_accept:
            self._acceptance = Acceptance(accepted_by=req.requested_by)
            return None
        try:
            await workflow.wait_condition(
                lambda: self._acceptance is not None,
                timeout=max(accept_by - workflow.now(), timedelta(milliseconds=1)),
            )
        except TimeoutError:
            if self._acceptance is None:
                return await self._end(req, "expired", QuoteExpired.code, "not accepted in time")
        return None

    async def _settle_client(
        self, req: TradeInput, priced: Priced, held: Held, executed: Executed
    ) -> TradeResult:
        """After execution: book, take or pay the fiat, complete. Never compensates."""
        assert executed.fill is not None
        self._stage = "executed"
        trade = await step(A.book, req, priced, executed.fill, profile=VENUE)
        self._stage = "booked"
        paid = await self._pay(req, trade, held.hold_id if req.side == "buy" else None)
        await step(A.complete, req, trade, paid, profile=VENUE)
        self._stage = "completed"
        return TradeResult(
            operation_id=req.operation_id,
            state="completed",
            trade_id=trade.trade_id,
            quantity=trade.quantity,
            client_fiat=trade.client_fiat,
        )

    async def _pay(self, req: TradeInput, trade: TradeRecord, hold_id: str | None) -> Paid:
        try:
            return await step(A.pay, req, trade, hold_id, profile=PAY_FIRST)
        except ActivityError as exc:
            cause = exc.cause if exc.cause is not None else exc
            # The error's code as the activity raised it (typed details, not its text).
            failure = PaymentFailure(detail=str(cause), error_code=code_of(exc))
            await step(A.alert_payment, req, trade, failure, profile=VENUE)
        self._stage = "payment_delayed"
        return await step(A.pay, req, trade, hold_id, profile=PAY_PATIENT)

    async def _end(
        self,
        req: TradeInput,
        state: Ending,
        code: str | None,
        detail: str,
        hold_id: str | None = None,
        round_: int = 1,
    ) -> TradeResult:
        ended = Ended(
            operation_id=req.operation_id,
            state=state,
            error_code=code,
            detail=detail,
            hold_id=hold_id,
            round=round_,
        )
        await step(A.end, req, ended, profile=VENUE)  # compensates: releases a hold
        self._stage = state
        return TradeResult(
            operation_id=req.operation_id, state=state, error_code=code, detail=detail
        )
