"""The fast saga tier: the sagas' real workflows and activities over the fakes of their
ports (tests/fakes.py, each passing its port's contract suite), on Temporal's
time-skipping test server (infra/testserver.py), without the stack. A day of approval
window or an hour of a stuck transaction passes in moments."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from infra.testserver import ensure
from sagas import accounts
from sagas.ledger import Account, AccountKind, Asset
from sagas.operations import OperationKind, OperationRecord
from sagas.ports import OperationStore
from services.worker.bootstrap import SANDBOX
from tests.fakes import InMemoryLedger

QUEUE = "sagas-fast"


@pytest.fixture(scope="session")
def test_server() -> Path:
    """The time-skipping server's launcher (installed from Maven Central on first use)."""
    return ensure(lambda line: print(f"[sagas] {line}"))


async def on_test_server(
    test_server: Path,
    workflows: Sequence[type],
    activities: Sequence[Callable[..., Any]],
    scenario: Callable[[Client], Awaitable[None]],
) -> None:
    """Run `scenario` with a client of a fresh time-skipping server and a worker of these
    workflows (sandboxed as the platform's worker runs them) and activities on QUEUE."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=str(test_server)
    )
    async with env:
        with ThreadPoolExecutor(8) as pool:
            async with Worker(
                env.client,
                task_queue=QUEUE,
                workflows=workflows,
                workflow_runner=SANDBOX,
                activities=activities,
                activity_executor=pool,
            ):
                await scenario(env.client)


async def until(check: Callable[[], bool], seconds: float = 20) -> None:
    """Wait (real time) until `check` holds; fail the test if it does not in time."""
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the saga did not get there in time")


def books(asset: Asset, client_id: str) -> InMemoryLedger:
    """A ledger with the asset, the platform's accounts for it and the client's."""
    ledger = InMemoryLedger()
    ledger.register_asset(asset)
    for name, kind in accounts.PLATFORM_ACCOUNTS:
        ledger.open_account(Account(id=name(asset.code), asset=asset.code, kind=kind))
    ledger.open_account(
        Account(
            id=accounts.client(client_id, asset.code),
            asset=asset.code,
            kind=AccountKind.CLIENT_AVAILABLE,
            owner=client_id,
        )
    )
    return ledger


def requested(
    ops: OperationStore,
    op_id: str,
    kind: OperationKind,
    client_id: str,
    asset: str,
    chain: str,
    amount: int,
    requested_by: str,
    destination: str | None = None,
) -> None:
    """The operation as the API records it before it starts the saga."""
    now = datetime.now(UTC)
    ops.create(
        OperationRecord(
            id=op_id,
            kind=kind,
            client_id=client_id,
            asset=asset,
            chain=chain,
            amount=amount,
            destination=destination,
            request_hash=op_id,
            requested_by=requested_by,
            state="requested",
            created_at=now,
            updated_at=now,
        )
    )
