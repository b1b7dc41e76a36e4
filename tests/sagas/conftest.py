"""The fast saga tier: the sagas' real workflows and activities over the fakes of their
ports (tests/fakes.py, fakes_trading.py and fakes_chains.py, each passing its port's
contract suite), on Temporal's time-skipping test server (infra/testserver.py), without
the stack. A day of approval window or an hour of a stuck transaction passes in
moments."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
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
HISTORIES = Path(__file__).resolve().parents[1] / "fixtures" / "histories"
RECORD = "RECORD_SAGA_HISTORIES"  # set (to 1) to record the replay fixtures again


class SagaServer:
    """Runs each scenario on a fresh time-skipping server (its clock starts at today: a
    day one scenario skipped does not age the next one's requests, which the withdrawal
    and trade sagas compare with the workflow's clock), on one event loop in a thread of
    its own. The next scenario's server starts while one runs.

    A module whose scenarios never compare wall-clock times with the workflow's clock
    may name a server to share instead (about a second saved per scenario)."""

    def __init__(self, launcher: Path) -> None:
        self._launcher = launcher
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._next = self._prepare()
        self._shared: dict[str, WorkflowEnvironment] = {}

    def _prepare(self) -> Future[WorkflowEnvironment]:
        return asyncio.run_coroutine_threadsafe(
            WorkflowEnvironment.start_time_skipping(
                data_converter=pydantic_data_converter,
                test_server_existing_path=str(self._launcher),
                # The SDK's 5 s is short for a JVM on two busy cores.
                test_server_startup_timeout=timedelta(seconds=60),
            ),
            self._loop,
        )

    async def _fresh(self) -> WorkflowEnvironment:
        # The next server starts now whether this one came up or not: one failed start
        # fails one scenario, not every one after it.
        starting, self._next = self._next, self._prepare()
        return await asyncio.wrap_future(starting)

    def run(
        self,
        workflows: Sequence[type],
        activities: Sequence[Callable[..., Any]],
        scenario: Callable[[Client], Awaitable[None]],
        shared: str | None = None,
    ) -> None:
        """Run `scenario` with a client of a fresh server (or of the server named
        `shared`) and a worker of these workflows (sandboxed as the platform's worker
        runs them) and activities on QUEUE."""
        asyncio.run_coroutine_threadsafe(
            self._run(workflows, activities, scenario, shared), self._loop
        ).result()

    async def _run(
        self,
        workflows: Sequence[type],
        activities: Sequence[Callable[..., Any]],
        scenario: Callable[[Client], Awaitable[None]],
        shared: str | None,
    ) -> None:
        if shared is None:
            env = await self._fresh()
        elif shared not in self._shared:
            env = self._shared[shared] = await self._fresh()
        else:
            env = self._shared[shared]
        try:
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
        finally:
            if shared is None:
                await env.shutdown()

    def close(self) -> None:
        async def last() -> None:
            for env in [*self._shared.values(), await asyncio.wrap_future(self._next)]:
                with contextlib.suppress(Exception):
                    await env.shutdown()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(last(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@pytest.fixture(scope="session")
def test_server() -> Iterator[SagaServer]:
    """Time-skipping servers (the launcher installed from Maven Central on first use)."""
    server = SagaServer(ensure(lambda line: print(f"[sagas] {line}")))
    yield server
    server.close()


async def keep_history(handle: WorkflowHandle[Any, Any], name: str) -> None:
    """With RECORD_SAGA_HISTORIES set, write the finished workflow's history where
    tests/unit/test_saga_replay.py replays it (tests/fixtures/histories/<name>.json)."""
    if os.environ.get(RECORD):
        history = await handle.fetch_history()
        (HISTORIES / f"{name}.json").write_text(history.to_json() + "\n")


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
