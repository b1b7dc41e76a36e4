"""The sagas replay deterministically: histories recorded from real runs (on the stack: a
withdrawal completed, one approved by a quorum, one expired, a deposit credited, one
cancelled by a reorg; in the fast saga tier: a trade executed, one whose quote expired,
a netted settlement of two providers, one refused for its confirmation, one timed out)
replay against today's workflow code without a non-determinism error. A change that
breaks a running saga fails here first. Re-record with tests/fixtures/histories/README.md."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from sagas.deposit.workflows import DepositWorkflow
from sagas.settlement import SettlementInput
from sagas.settlement.workflows import SettlementWorkflow
from sagas.trade import TradeInput
from sagas.trade.workflows import TradeWorkflow
from sagas.withdrawal import WithdrawalInput
from sagas.withdrawal.workflows import WithdrawalWorkflow
from services.worker.bootstrap import SANDBOX

HISTORIES = Path(__file__).resolve().parents[1] / "fixtures" / "histories"
NAMES = [
    "completed",
    "approved_by_quorum",
    "expired",
    "deposit_credited",
    "deposit_cancelled",
    "trade_completed",
    "trade_expired",
    "settlement_settled",
    "settlement_refused",
    "settlement_timed_out",
]


@pytest.mark.parametrize("name", NAMES)
def test_a_recorded_history_replays(name: str) -> None:
    text = (HISTORIES / f"{name}.json").read_text()
    history = WorkflowHistory.from_json(f"recorded-{name}", text)
    replayer = Replayer(
        workflows=[WithdrawalWorkflow, DepositWorkflow, TradeWorkflow, SettlementWorkflow],
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


@workflow.defn(name="Trade", sandboxed=False)
class _AlteredTrade:
    """A trade that waits before asking for a quote."""

    @workflow.run
    async def run(self, req: TradeInput) -> None:
        await workflow.sleep(1)


@workflow.defn(name="Settlement", sandboxed=False)
class _AlteredSettlement:
    """A settlement that waits before planning."""

    @workflow.run
    async def run(self, req: SettlementInput) -> None:
        await workflow.sleep(1)


@pytest.mark.parametrize(
    ("name", "altered"),
    [
        ("completed", _AlteredWithdrawal),
        ("trade_completed", _AlteredTrade),
        ("settlement_settled", _AlteredSettlement),
    ],
)
def test_a_changed_workflow_is_caught(name: str, altered: type) -> None:
    """The replay check can fail: a saga whose steps changed does not replay."""
    history = WorkflowHistory.from_json(
        f"recorded-{name}", (HISTORIES / f"{name}.json").read_text()
    )
    replayer = Replayer(workflows=[altered], data_converter=pydantic_data_converter)
    result = asyncio.run(replayer.replay_workflow(history, raise_on_replay_failure=False))
    assert result.replay_failure is not None
