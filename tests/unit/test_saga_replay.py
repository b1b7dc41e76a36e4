"""The sagas replay deterministically: histories recorded from real runs (a withdrawal
completed, one approved by a quorum, one expired, a deposit credited, one cancelled by
a reorg) replay against today's workflow code without a non-determinism error. A change
that breaks a running saga fails here first. Re-record with tests/fixtures/histories/README.md."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from sagas.deposit.workflows import DepositWorkflow
from sagas.withdrawal import WithdrawalInput
from sagas.withdrawal.workflows import WithdrawalWorkflow
from services.worker.bootstrap import SANDBOX

HISTORIES = Path(__file__).resolve().parents[1] / "fixtures" / "histories"
NAMES = ["completed", "approved_by_quorum", "expired", "deposit_credited", "deposit_cancelled"]


@pytest.mark.parametrize("name", NAMES)
def test_a_recorded_history_replays(name: str) -> None:
    text = (HISTORIES / f"{name}.json").read_text()
    history = WorkflowHistory.from_json(f"recorded-{name}", text)
    replayer = Replayer(
        workflows=[WithdrawalWorkflow, DepositWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=SANDBOX,
    )
    result = asyncio.run(replayer.replay_workflow(history, raise_on_replay_failure=False))
    assert result.replay_failure is None, result.replay_failure


@workflow.defn(name="Withdrawal", sandboxed=False)
class _AlteredWithdrawal:
    """A withdrawal that waits before reserving: not what the recorded run did."""

    @workflow.run
    async def run(self, req: WithdrawalInput) -> None:
        await workflow.sleep(1)


def test_a_changed_workflow_is_caught() -> None:
    """The replay check can fail: a saga whose steps changed does not replay."""
    history = WorkflowHistory.from_json(
        "recorded-completed", (HISTORIES / "completed.json").read_text()
    )
    replayer = Replayer(workflows=[_AlteredWithdrawal], data_converter=pydantic_data_converter)
    result = asyncio.run(replayer.replay_workflow(history, raise_on_replay_failure=False))
    assert result.replay_failure is not None
