"""The withdrawal saga as a Temporal workflow: deterministic, every effect in an activity.

Approvals are operators' signatures over the withdrawal's intent, handed in through the
API (which checks them and stores them); its `approvals_changed` signal only makes the
saga count again, verifying every signature (the signer verifies them once more, so a
forged signal or row moves nothing). The chain watcher's events arrive as `chain_event`
signals; a polling activity is the fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from sagas.continuation import history_full
    from sagas.errors import (
        ApprovalExpired,
        ApprovalRefused,
        DestinationScreened,
        InvalidState,
        PolicyDenied,
    )
    from sagas.policy import ApprovalTally
    from sagas.steps import SEND, WITHDRAW, step
    from sagas.withdrawal import (
        WORKFLOW,
        Approval,
        ApprovalView,
        ChainNudge,
        ChainStatus,
        Completion,
        Ended,
        Ending,
        FinalityWait,
        OperatorDecision,
        PolicyOutcome,
        ReserveOutcome,
        ScreenOutcome,
        SendOutcome,
        WithdrawalInput,
        WithdrawalResult,
    )
    from sagas.withdrawal.activities import WithdrawalActivities as A


@workflow.defn(name=WORKFLOW)
class WithdrawalWorkflow:
    def __init__(self) -> None:
        self._stage = "requested"
        self._tally: ApprovalView | None = None
        self._approvals_nudged = False
        self._signed = False  # approvals are signatures (every saga started since)
        self._legacy: ApprovalTally | None = None
        self._recording = 0
        self._nudged = False
        self._decisions: list[OperatorDecision] = []
        self._compliance: list[OperatorDecision] = []
        self._decision_ids: set[str] = set()
        self._local = False  # fast steps as local activities (the `local-steps` patch)

    @workflow.query
    def stage(self) -> str:
        return self._stage

    @workflow.signal
    def chain_event(self, nudge: ChainNudge) -> None:
        self._nudged = True

    @workflow.signal
    def operator_decision(self, decision: OperatorDecision) -> None:
        # Each is acted on, in the order they came; one per id (two requests under one
        # Idempotency-Key at once are one decision: never a bump of the bump).
        if decision.decision_id is not None:
            if decision.decision_id in self._decision_ids:
                return
            self._decision_ids.add(decision.decision_id)
        if decision.action in ("release", "reject"):
            self._compliance.append(decision)  # a held withdrawal's review
        else:
            self._decisions.append(decision)

    @workflow.signal
    def approvals_changed(self) -> None:
        """From the API: a signed approval was handed in; count again (the signal carries
        nothing to trust: the count verifies the signatures)."""
        self._approvals_nudged = True

    @workflow.query
    def tally(self) -> ApprovalView | None:
        return self._tally

    # --- before signed approvals (histories recorded without the "signed-approvals"
    # marker replay through these; a saga started since refuses the update) ---
    def _check_approval(self, approval: Approval) -> ApprovalTally:
        if self._signed or self._legacy is None or self._legacy.complete:
            raise ApplicationError(
                f"{InvalidState.code}: not awaiting approval (stage {self._stage})",
                type="InvalidState",
                non_retryable=True,
            )
        try:
            return self._legacy.approve(approval.operator)
        except ApprovalRefused as exc:
            raise ApplicationError(str(exc), type="ApprovalRefused", non_retryable=True) from None

    @workflow.update
    async def approve(self, approval: Approval) -> ApprovalView:
        self._legacy = self._check_approval(approval)  # again: another update may have won
        tally = self._legacy
        self._recording += 1
        try:
            await step(
                A.record_approval, self._input, approval, len(tally.approvers), profile=WITHDRAW
            )
        finally:
            self._recording -= 1
        return ApprovalView(
            required=tally.required, approvers=list(tally.approvers), complete=tally.complete
        )

    @approve.validator
    def _validate_approval(self, approval: Approval) -> None:
        self._check_approval(approval)

    async def _step(self, activity: Any, *args: Any) -> Any:
        """A step that is a fast database write or read, idempotent by operation id and
        step: a local activity in sagas started since the `local-steps` patch (decision
        0022), a remote one where the history was recorded before."""
        return await step(activity, *args, profile=WITHDRAW, local=self._local)

    @workflow.run
    async def run(self, req: WithdrawalInput) -> WithdrawalResult:
        self._input = req
        self._local = workflow.patched("local-steps")
        if req.resume is not None and workflow.info().continued_run_id is not None:
            return await self._finish(req)  # a new run of the wait for finality
        reserved: ReserveOutcome = await self._step(A.reserve, req)
        if not reserved.reserved:
            self._stage = "rejected"
            return WithdrawalResult(
                operation_id=req.operation_id,
                state="rejected",
                error_code=reserved.error_code,
                detail=reserved.detail,
            )
        self._stage = "reserved"
        decision: PolicyOutcome = await self._step(A.decide, req)
        if decision.outcome == "deny":
            return await self._end(req, "rejected", PolicyDenied.code, decision.detail)
        self._signed = workflow.patched("signed-approvals")
        if self._signed and decision.screening_required:
            screened: ScreenOutcome = await self._step(A.screen, req)
            if screened.hit is not None:
                self._stage = "held"
                await workflow.wait_condition(lambda: bool(self._compliance))
                released = await self._step(A.compliance, req, self._compliance.pop(0))
                if not released:
                    return await self._end(req, "rejected", DestinationScreened.code, screened.hit)
                # Released, a screening hit is still paid only with a quorum's signatures
                # over its intent (the signer screens the destination itself too).
                decision = decision.model_copy(
                    update={
                        "outcome": "needs_approval",
                        "approvals_required": max(
                            decision.approvals_required, decision.approval_quorum
                        ),
                    }
                )
                self._stage = "reserved"
        if self._signed:
            await self._step(A.record_intent, req, decision)
        if decision.outcome == "needs_approval" and self._signed:
            self._stage = "awaiting_approval"
            ended = await self._await_approvals(req, decision)
            if ended is not None:
                return ended
        elif decision.outcome == "needs_approval":
            ended = await self._await_legacy_approvals(req, decision)
            if ended is not None:
                return ended
        await self._step(A.mark_approved, req)
        self._stage = "approved"
        sent: SendOutcome = await step(A.send, req, profile=SEND)
        if sent.tx_hash is None:
            return await self._end(req, "failed", sent.error_code, sent.detail)
        return await self._finish(req)

    async def _finish(self, req: WithdrawalInput) -> WithdrawalResult:
        self._stage = "broadcast"
        status = await self._await_final(req)
        await self._step(A.complete, Completion(operation_id=req.operation_id, status=status))
        state: Ending = "completed" if status.state == "final" else "failed"
        self._stage = state
        return WithdrawalResult(
            operation_id=req.operation_id,
            state=state,
            error_code=None if state == "completed" else "CUS-4221",
            tx_hash=status.tx_hash,
            fee=status.fee,
            fee_asset=status.fee_asset,
        )

    async def _await_approvals(
        self, req: WithdrawalInput, decision: PolicyOutcome
    ) -> WithdrawalResult | None:
        """Count the signed approvals each time one is handed in, until the quorum or the
        deadline (then the saga ends expired: the result)."""
        self._tally = ApprovalView(
            required=decision.approvals_required, approvers=[], complete=False
        )
        deadline = req.requested_at + timedelta(seconds=req.approval_ttl_seconds)
        while True:
            self._approvals_nudged = False
            self._tally = await self._step(A.count_approvals, req)
            if self._tally.complete:
                return None
            left = (deadline - workflow.now()).total_seconds()
            if left <= 0:
                detail = f"{len(self._tally.approvers)} of {self._tally.required} approvals in time"
                return await self._end(req, "expired", ApprovalExpired.code, detail)
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await workflow.wait_condition(
                    lambda: self._approvals_nudged, timeout=timedelta(seconds=left)
                )

    async def _await_legacy_approvals(
        self, req: WithdrawalInput, decision: PolicyOutcome
    ) -> WithdrawalResult | None:
        self._stage = "awaiting_approval"
        self._legacy = ApprovalTally(
            required=decision.approvals_required, requester=req.requested_by
        )
        try:
            await workflow.wait_condition(
                lambda: self._legacy is not None and self._legacy.complete,
                timeout=timedelta(seconds=req.approval_ttl_seconds),
            )
        except TimeoutError:
            tally = self._legacy
            if not tally.complete:
                detail = f"{len(tally.approvers)} of {tally.required} approvals in time"
                self._legacy = None
                return await self._end(req, "expired", ApprovalExpired.code, detail)
        if workflow.patched("approvals-recorded-before-approved"):
            await workflow.wait_condition(lambda: self._recording == 0)
        return None

    async def _end(
        self, req: WithdrawalInput, state: str, code: str | None, detail: str
    ) -> WithdrawalResult:
        ended = Ended(
            operation_id=req.operation_id,
            state=state,  # type: ignore[arg-type]
            error_code=code,
            detail=detail,
        )
        await self._step(A.void, ended)
        self._stage = state
        return WithdrawalResult(
            operation_id=req.operation_id, state=ended.state, error_code=code, detail=detail
        )

    async def _await_final(self, req: WithdrawalInput) -> ChainStatus:
        """Wait for finality: woken by the watcher's events, polling as the fallback.
        Past the deadline: alert once, rebroadcast, and act on operators' decisions."""
        renewable = workflow.patched("finality-continue-as-new")
        started, alerted, mined = workflow.now(), False, False
        resume = req.resume if workflow.info().continued_run_id is not None else None
        if resume is not None:
            started, alerted, mined = resume.started_at, resume.alerted, resume.mined
            # Decisions signalled to this run before it got here follow the carried ones,
            # but not one the last run had already taken under the same id.
            carried = set(resume.decision_ids)
            self._decisions = [
                *resume.decisions,
                *(
                    d
                    for d in self._decisions
                    if d.decision_id not in carried or d.decision_id is None
                ),
            ]
            self._compliance = [
                d for d in self._compliance if d.decision_id not in carried or d.decision_id is None
            ]
            self._decision_ids |= carried
        while True:
            status: ChainStatus = await self._step(A.chain_status, req)
            if status.state in ("final", "reverted"):
                return status
            if status.state == "mined":
                mined = True
            elif mined:  # it was in a block and is not any more: a reorg dropped it
                mined = False
                await step(A.rebroadcast, req, profile=WITHDRAW)
            if not alerted and workflow.now() - started > timedelta(
                seconds=req.stuck_after_seconds
            ):
                alerted = True
                await self._step(A.alert_stuck, req)
                await step(A.rebroadcast, req, profile=WITHDRAW)
            if self._decisions:
                decision = self._decisions.pop(0)
                await step(A.act_on_decision, req, decision, profile=WITHDRAW)
                continue
            if renewable and history_full(req.history_limit):
                await workflow.wait_condition(workflow.all_handlers_finished)
                wait = FinalityWait(
                    started_at=started,
                    alerted=alerted,
                    mined=mined,
                    decisions=self._decisions,
                    decision_ids=sorted(self._decision_ids),
                )
                workflow.continue_as_new(req.model_copy(update={"resume": wait}))
            self._nudged = False
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await workflow.wait_condition(
                    lambda: self._nudged or bool(self._decisions),
                    timeout=timedelta(seconds=req.poll_seconds),
                )
