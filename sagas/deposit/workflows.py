"""The deposit saga as a Temporal workflow."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from sagas.continuation import history_full
    from sagas.deposit import WORKFLOW, DepositInput, DepositNudge, DepositResult
    from sagas.deposit.activities import DepositActivities as A
    from sagas.steps import PATIENT, step


@workflow.defn(name=WORKFLOW)
class DepositWorkflow:
    def __init__(self) -> None:
        self._nudged = False

    @workflow.signal
    def chain_event(self, nudge: DepositNudge) -> None:
        self._nudged = True

    @workflow.run
    async def run(self, dep: DepositInput) -> DepositResult:
        # Only a run the saga continued itself skips its first step (not a start that
        # merely says so).
        if not (dep.resumed and workflow.info().continued_run_id is not None):
            await step(A.record_seen, dep, profile=PATIENT)
        renewable = workflow.patched("deposit-continue-as-new")
        while True:
            state: str = await step(A.observed_state, dep, profile=PATIENT)
            if state == "final":
                break
            if state == "reorged":
                return await step(A.cancel, dep, profile=PATIENT)
            if renewable and history_full(dep.history_limit):
                # A deposit that stays unconfirmed (or an output the watcher never saw)
                # waits on in a new run: its history never nears Temporal's limits.
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(dep.model_copy(update={"resumed": True}))
            self._nudged = False
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._nudged, timeout=timedelta(seconds=dep.poll_seconds)
                )
        reason: str | None = await step(A.screen, dep, profile=PATIENT)
        return await step(A.credit, dep, reason, profile=PATIENT)
