"""The settlement saga as a Temporal workflow: plan, then delivery versus payment per
counterparty (concurrently), then reconciliation. Started on demand (the API) or by the
Temporal schedule the worker keeps (SCHEDULE_ID)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from sagas.liquidity import SettlementLeg
    from sagas.settlement import (
        WORKFLOW,
        Break,
        CounterpartyPlan,
        Plan,
        SettlementInput,
        SettlementResult,
    )
    from sagas.settlement.activities import SettlementActivities as A
    from sagas.steps import SETTLE, step


@workflow.defn(name=WORKFLOW)
class SettlementWorkflow:
    def __init__(self) -> None:
        self._stage = "requested"

    @workflow.query
    def stage(self) -> str:
        return self._stage

    @workflow.run
    async def run(self, req: SettlementInput) -> SettlementResult:
        if not req.settlement_id:  # a scheduled run: its workflow id names it
            req = req.model_copy(update={"settlement_id": workflow.info().workflow_id})
        plan = await step(A.plan, req, profile=SETTLE)
        if not plan.parts:
            await self._reconcile(req, plan, "nothing_to_settle")
            return SettlementResult(settlement_id=req.settlement_id, state="nothing_to_settle")
        self._stage = "delivering"
        outcomes = await asyncio.gather(
            *(self._dvp(req, part) for part in plan.parts), return_exceptions=True
        )
        settled, compensated = [], []
        for part, outcome in zip(plan.parts, outcomes, strict=True):
            if outcome is True:
                settled.append(part.counterparty)
            else:  # compensated, a failed platform leg, or an error: operators look
                if isinstance(outcome, BaseException):
                    workflow.logger.error("settlement of %s failed: %s", part.counterparty, outcome)
                compensated.append(part.counterparty)
        state = "settled" if not compensated else "compensated" if not settled else "partly_settled"
        breaks = await self._reconcile(req, plan, state)
        self._stage = state
        return SettlementResult(
            settlement_id=req.settlement_id,
            settled=settled,
            compensated=compensated,
            breaks=breaks,
            state=state,  # type: ignore[arg-type]
        )

    async def _reconcile(self, req: SettlementInput, plan: Plan, outcome: str) -> list[Break]:
        return await step(A.reconcile, req, plan, outcome, profile=SETTLE)

    async def _dvp(self, req: SettlementInput, part: CounterpartyPlan) -> bool:
        """The provider's legs first; the platform's only once those are confirmed. False
        if compensated (the provider refused the instructions or did not deliver)."""
        refused = await step(A.instruct, req, part, profile=SETTLE)
        if refused is not None:
            await self._compensate(req, part, [refused])
            return False
        deadline = workflow.now() + timedelta(seconds=req.leg_timeout_seconds)
        while True:
            seen = await step(A.counterparty_legs, req, part, profile=SETTLE)
            if seen.confirmed:
                break
            if workflow.now() >= deadline:
                await self._compensate(req, part, seen.missing)
                return False
            await workflow.sleep(timedelta(seconds=req.poll_seconds))
        for leg in part.legs:
            if leg.payer != "platform":
                continue
            if leg.asset == req.currency:
                await step(A.pay_fiat, req, part, leg, profile=SETTLE)
            elif not await self._deliver_crypto(req, part, leg):
                return False  # reverted: alerted; the leg stays owed (a reconciliation break)
        await step(A.settled, req, part, profile=SETTLE)
        return True

    async def _deliver_crypto(
        self, req: SettlementInput, part: CounterpartyPlan, leg: SettlementLeg
    ) -> bool:
        sent = await step(A.send_crypto, req, part, leg, profile=SETTLE)
        if sent is None:
            return False  # not sent (refused destination, cannot pay): alerted, stays owed
        while True:
            status = await step(A.crypto_status, req, part, leg, profile=SETTLE)
            if status.state in ("final", "reverted"):
                break
            await workflow.sleep(timedelta(seconds=req.poll_seconds))
        return await step(A.book_crypto, req, part, leg, status, profile=SETTLE)

    async def _compensate(
        self, req: SettlementInput, part: CounterpartyPlan, missing: list[str]
    ) -> None:
        """Compensate a counterparty's part: its instructions cancelled, its trades
        unsettled again, operators told what is missing (nothing of ours was sent)."""
        await step(A.compensate, req, part, missing, profile=SETTLE)
