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
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from sagas.errors import InvalidState, QuoteExpired, QuoteInvalid
    from sagas.trade import (
        MAX_ROUNDS,
        WORKFLOW,
        Acceptance,
        Ended,
        Ending,
        Executed,
        Held,
        Paid,
        Priced,
        TradeInput,
        TradeRecord,
        TradeResult,
        TradeView,
    )
    from sagas.trade.activities import TradeActivities as A

_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    non_retryable_error_types=["TransferIdConflict", "InvalidState", "IdempotencyConflict"],
)
# The fiat leg after execution: a few quick tries, then an alert, then patiently for ever.
_PAY_FIRST = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=5),
    maximum_attempts=4,
    non_retryable_error_types=["IdempotencyConflict"],
)
_PAY_PATIENT = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    maximum_interval=timedelta(seconds=60),
    non_retryable_error_types=["IdempotencyConflict"],
)
_TIMEOUT = timedelta(seconds=20)  # above an adapter's timeout times its attempts
_QUOTE_WITHIN = timedelta(minutes=2)


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
            raise ApplicationError(
                f"{InvalidState.code}: not awaiting acceptance (stage {self._stage})",
                type="InvalidState",
                non_retryable=True,
            )
        if self._accept_by is not None and workflow.now() >= self._accept_by:
            raise ApplicationError(
                f"{QuoteExpired.code}: the quote expired at {self._accept_by.isoformat()}",
                type="QuoteExpired",
                non_retryable=True,
            )

    @workflow.run
    async def run(self, req: TradeInput) -> TradeResult:
        for round_ in range(1, MAX_ROUNDS + 1):
            try:
                priced: Priced = await workflow.execute_activity_method(
                    A.quote,
                    args=[req, round_],
                    start_to_close_timeout=_TIMEOUT,
                    schedule_to_close_timeout=_QUOTE_WITHIN,
                    retry_policy=_RETRY,
                )
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
            await workflow.execute_activity_method(
                A.accept,
                args=[req, self._acceptance, round_],
                start_to_close_timeout=_TIMEOUT,
                retry_policy=_RETRY,
            )
            self._stage = "accepted"
            held: Held = await workflow.execute_activity_method(
                A.hold, args=[req, priced], start_to_close_timeout=_TIMEOUT, retry_policy=_RETRY
            )
            if held.hold_id is None:  # refused (insufficient funds): recorded, nothing held
                self._stage = "rejected"
                return TradeResult(
                    operation_id=req.operation_id,
                    state="rejected",
                    error_code=held.error_code,
                    detail=held.detail,
                )
            self._stage = "held" if req.side == "buy" else "reserved"
            executed: Executed = await workflow.execute_activity_method(
                A.execute,
                args=[req, priced],
                start_to_close_timeout=_TIMEOUT,
                retry_policy=_RETRY,
            )
            if executed.fill is not None:
                return await self._settle_client(req, priced, held, executed)
            stale = executed.error_code == QuoteExpired.code
            if stale and req.auto_accept and not last:
                await workflow.execute_activity_method(
                    A.release,
                    args=[req, held.hold_id, round_],
                    start_to_close_timeout=_TIMEOUT,
                    retry_policy=_RETRY,
                )
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
        trade: TradeRecord = await workflow.execute_activity_method(
            A.book,
            args=[req, priced, executed.fill],
            start_to_close_timeout=_TIMEOUT,
            retry_policy=_RETRY,
        )
        self._stage = "booked"
        paid = await self._pay(req, trade, held.hold_id if req.side == "buy" else None)
        await workflow.execute_activity_method(
            A.complete,
            args=[req, trade, paid],
            start_to_close_timeout=_TIMEOUT,
            retry_policy=_RETRY,
        )
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
            paid: Paid = await workflow.execute_activity_method(
                A.pay,
                args=[req, trade, hold_id],
                start_to_close_timeout=_TIMEOUT,
                retry_policy=_PAY_FIRST,
            )
            return paid
        except ActivityError as exc:
            cause = exc.cause if exc.cause is not None else exc
            await workflow.execute_activity_method(
                A.alert_payment,
                args=[req, trade, str(cause)],
                start_to_close_timeout=_TIMEOUT,
                retry_policy=_RETRY,
            )
        self._stage = "payment_delayed"
        paid = await workflow.execute_activity_method(
            A.pay,
            args=[req, trade, hold_id],
            start_to_close_timeout=_TIMEOUT,
            retry_policy=_PAY_PATIENT,
        )
        return paid

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
        await workflow.execute_activity_method(
            A.end, args=[req, ended], start_to_close_timeout=_TIMEOUT, retry_policy=_RETRY
        )
        self._stage = state
        return TradeResult(
            operation_id=req.operation_id, state=state, error_code=code, detail=detail
        )
