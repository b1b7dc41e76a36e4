"""The stake, unstake and redelegation sagas as Temporal workflows: each reads as its
business process, every effect an activity (sagas/staking/activities.py), idempotent by
operation id.

Approvals are operators' signatures over the intent, handed in through the API; the
`approvals_changed` signal only makes the saga count again. Waiting for a block polls
the chain every `poll_seconds` (Tendermint blocks are final when committed). An
unbonding waits on one durable timer until the chain's completion time, however long
(21 days on the Hub): one timer is one event, the history does not grow while it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from sagas import errors
    from sagas.errors import ApprovalExpired, PolicyDenied
    from sagas.staking import (
        REDELEGATE_WORKFLOW,
        STAKE_WORKFLOW,
        UNSTAKE_WORKFLOW,
        Broadcast,
        Decision,
        Ended,
        RedelegateInput,
        RedelegateResult,
        StakeInput,
        StakeResult,
        Tally,
        TxOutcome,
        UnstakeInput,
        UnstakeResult,
    )
    from sagas.staking.activities import StakingActivities as A
    from sagas.steps import SEND, WITHDRAW, WITHDRAWAL_REFUSALS, code_of, detail_of, step


def _refused(exc: ActivityError) -> bool:
    """The step was refused (an error its retry policy does not retry)."""
    cause = exc.cause
    return isinstance(cause, ApplicationError) and cause.type in WITHDRAWAL_REFUSALS


def _refusal_code(exc: ActivityError) -> str:
    """The refusal's code: as the activity typed it, else its error class's."""
    cause = exc.cause
    named = getattr(errors, cause.type or "", None) if isinstance(cause, ApplicationError) else None
    fallback = (
        named.code if isinstance(named, type) and issubclass(named, errors.CustodyError) else None
    )
    return code_of(exc) or fallback or errors.CustodyError.code


class _Saga:
    """What the sagas share: the policy, approval and broadcast steps."""

    def __init__(self) -> None:
        self._stage = "requested"
        self._tally: Tally | None = None
        self._nudged = False

    @workflow.query
    def stage(self) -> str:
        return self._stage

    @workflow.query
    def tally(self) -> Tally | None:
        return self._tally

    @workflow.signal
    def approvals_changed(self) -> None:
        """From the API: a signed approval was handed in; count again."""
        self._nudged = True

    async def _authorise(self, req: StakeInput | UnstakeInput | RedelegateInput) -> Ended | None:
        """Reserve, decide, record the intent, wait for the approvals: None once the
        signer may sign, else how the saga ended (its reservations voided)."""
        rejected: Ended | None = await step(A.reserve, req, profile=WITHDRAW)
        if rejected is not None:
            self._stage = "rejected"
            return rejected
        self._stage = "reserved"
        try:
            ending = await self._approve(req)
        except ActivityError as exc:
            # Refused before anything was signed (a position the signer cannot walk to,
            # an operation in another state): retrying cannot help; release both
            # reservations and say why.
            if not _refused(exc):
                raise
            ending = ("rejected", _refusal_code(exc), detail_of(exc))
        if ending is not None:
            return await self._end(req, *ending)
        sent: Broadcast = await step(A.broadcast, req, profile=SEND)
        if sent.tx_hash is None:
            return await self._end(req, "failed", sent.error_code, sent.detail)
        self._stage = "broadcast"
        return None

    async def _approve(
        self, req: StakeInput | UnstakeInput | RedelegateInput
    ) -> tuple[str, str | None, str] | None:
        """Decide, record the intent, wait for the approvals: None once approved, else how
        the saga ends (state, code, detail)."""
        decision: Decision = await step(A.decide, req, profile=WITHDRAW)
        if decision.outcome == "deny":
            return "rejected", PolicyDenied.code, decision.detail
        await step(A.record_intent, req, decision, profile=WITHDRAW)
        if decision.outcome == "needs_approval":
            self._stage = "awaiting_approval"
            deadline = req.requested_at + timedelta(seconds=req.approval_ttl_seconds)
            while True:
                self._nudged = False
                self._tally = await step(A.count_approvals, req, profile=WITHDRAW)
                if self._tally.complete:
                    break
                left = (deadline - workflow.now()).total_seconds()
                if left <= 0:
                    got = f"{len(self._tally.approvers)} of {self._tally.required} approvals"
                    return "expired", ApprovalExpired.code, got
                with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                    await workflow.wait_condition(
                        lambda: self._nudged, timeout=timedelta(seconds=left)
                    )
        await step(A.mark_approved, req, profile=WITHDRAW)
        self._stage = "approved"
        return None

    async def _in_block(self, req: StakeInput | UnstakeInput | RedelegateInput) -> TxOutcome:
        """The transaction's outcome once it is in a block (polling; pending is
        rebroadcast by the adapter), then booked (settle)."""
        while True:
            outcome: TxOutcome = await step(A.outcome, req, profile=WITHDRAW)
            if outcome.state != "pending":
                await step(A.settle, req, outcome, profile=WITHDRAW)
                return outcome
            await workflow.sleep(timedelta(seconds=req.poll_seconds))

    async def _end(
        self,
        req: StakeInput | UnstakeInput | RedelegateInput,
        state: str,
        code: str | None,
        detail: str,
    ) -> Ended:
        ended = Ended(
            operation_id=req.operation_id,
            state=state,  # type: ignore[arg-type]
            error_code=code,
            detail=detail,
        )
        await step(A.void, req, ended, profile=WITHDRAW)
        self._stage = state
        return ended


@workflow.defn(name=STAKE_WORKFLOW)
class StakeWorkflow(_Saga):
    @workflow.run
    async def run(self, req: StakeInput) -> StakeResult:
        ended = await self._authorise(req)
        if ended is not None:
            return StakeResult(
                operation_id=req.operation_id,
                state=ended.state,
                error_code=ended.error_code,
                detail=ended.detail,
            )
        outcome = await self._in_block(req)
        self._stage = "active" if outcome.state == "succeeded" else "failed"
        return StakeResult(
            operation_id=req.operation_id,
            state="active" if outcome.state == "succeeded" else "failed",
            error_code=None if outcome.state == "succeeded" else "CUS-4221",
            detail=outcome.detail,
            tx_hash=outcome.tx_hash,
            fee=outcome.fee,
        )


@workflow.defn(name=UNSTAKE_WORKFLOW)
class UnstakeWorkflow(_Saga):
    @workflow.run
    async def run(self, req: UnstakeInput) -> UnstakeResult:
        ended = await self._authorise(req)
        if ended is not None:
            return UnstakeResult(
                operation_id=req.operation_id,
                state=ended.state,
                error_code=ended.error_code,
                detail=ended.detail,
            )
        outcome = await self._in_block(req)
        if outcome.state != "succeeded":
            self._stage = "failed"
            return UnstakeResult(
                operation_id=req.operation_id,
                state="failed",
                error_code="CUS-4221",
                detail=outcome.detail,
                tx_hash=outcome.tx_hash,
                fee=outcome.fee,
            )
        self._stage = "unbonding"
        assert outcome.completion_time is not None and outcome.height is not None
        released = await self._released(req, outcome)
        await step(A.release, req, released, profile=WITHDRAW)
        self._stage = "completed"
        return UnstakeResult(
            operation_id=req.operation_id,
            state="completed",
            tx_hash=outcome.tx_hash,
            fee=outcome.fee,
            released=released,
        )

    async def _released(self, req: UnstakeInput, outcome: TxOutcome) -> int:
        """What the chain gives back: the unbonding's balance as it was created, read again
        just before its completion time (a slash since the undelegation shows there),
        confirmed once the chain no longer holds it. One durable timer for the long wait.
        (A worker down across the completion books the last balance it read: a slash in
        that window is for reconciliation to find.)"""
        assert outcome.completion_time is not None and outcome.height is not None
        margin = timedelta(seconds=req.release_margin_seconds)
        first: int | None = await step(A.unbonding_balance, req, outcome.height, profile=WITHDRAW)
        held = req.amount if first is None else first
        before = outcome.completion_time - margin - workflow.now()
        if before > timedelta(0):
            await workflow.sleep(before)
        last: int | None = await step(A.unbonding_balance, req, outcome.height, profile=WITHDRAW)
        held = held if last is None else last
        after = outcome.completion_time + margin - workflow.now()
        if after > timedelta(0):
            await workflow.sleep(after)
        while True:
            now: int | None = await step(A.unbonding_balance, req, outcome.height, profile=WITHDRAW)
            if now is None:
                return held
            held = now
            await workflow.sleep(timedelta(seconds=req.poll_seconds))


@workflow.defn(name=REDELEGATE_WORKFLOW)
class RedelegateWorkflow(_Saga):
    """Move (part of) a position to another validator: the shares move in the
    transaction's block (no unbonding), so once settled the redelegation is a position
    of its own, active at the destination."""

    @workflow.run
    async def run(self, req: RedelegateInput) -> RedelegateResult:
        ended = await self._authorise(req)
        if ended is not None:
            return RedelegateResult(
                operation_id=req.operation_id,
                state=ended.state,
                error_code=ended.error_code,
                detail=ended.detail,
            )
        outcome = await self._in_block(req)
        done = outcome.state == "succeeded"
        self._stage = "active" if done else "failed"
        return RedelegateResult(
            operation_id=req.operation_id,
            state="active" if done else "failed",
            error_code=None if done else "CUS-4221",
            detail=outcome.detail,
            tx_hash=outcome.tx_hash,
            fee=outcome.fee,
            completion_time=outcome.completion_time,
        )
