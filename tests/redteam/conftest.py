"""The red-team tier: attacks on the real stack (the signer as its own process, with
OpenBao, btcd and anvil), each asserting the refusal and that no value moved.

The attacker is a worker-side Temporal client: the worker's OpenBao role (it cannot
unwrap a seed) and Temporal access (it can start the signing workflows and so put
any request on the signer's task queue). It asks the signer for what a compromised
worker would want signed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from adapters.keys.store import SqlKeyStore
from adapters.sqldb import SqlDatabase
from adapters.temporal import connect
from adapters.temporal.signing import TemporalSigningClient
from sagas.signing.workflows import SignBtcWorkflow, SignCosmosWorkflow, SignEvmWorkflow
from services.settings import PlatformSettings
from tests.governed import Governed, approve


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/redteam/" in str(item.path):
            item.add_marker(pytest.mark.stack)


@pytest.fixture
def governed(request: pytest.FixtureRequest, fresh_postgres_url: str) -> Governed:
    """Governance on the fresh database: a genesis of three operators, the default
    policies (not for a test marked no_default_policy), and client c1's request key."""
    SqlKeyStore(fresh_postgres_url)  # schema in place before anything opens it
    gov = Governed(fresh_postgres_url)
    if request.node.get_closest_marker("no_default_policy") is None:
        gov.defaults()
    gov.client_key("c1")
    return gov


@pytest.fixture
def signer_queue(
    request: pytest.FixtureRequest, fresh_postgres_url: str, governed: Governed
) -> Iterator[str]:
    """The real signer process on its own task queue and a fresh database, trusting
    the genesis of `governed` (with the settings of a `signer_env` marker, if any)."""
    queue = f"redteam-signer-{uuid.uuid4().hex[:8]}"
    marker = request.node.get_closest_marker("signer_env")
    # A value may be a callable, read when the signer starts (a stack address).
    extra = (
        {}
        if marker is None
        else {k: str(v() if callable(v) else v) for k, v in marker.kwargs.items()}
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.signer.main", "--db-url", fresh_postgres_url],
        env={
            **os.environ,
            "CUSTODY_SIGNER_TASK_QUEUE": queue,
            "CUSTODY_GOVERNANCE_GENESIS_HASH": governed.genesis_hash,
            **extra,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "signer ready" in line:
            break
    else:
        pytest.fail(f"signer exited: {proc.wait()}")
    # Keep reading its output so the pipe never fills.
    threading.Thread(target=lambda: [None for _ in proc.stdout or ()], daemon=True).start()
    yield queue
    proc.terminate()
    proc.wait(30)


@pytest.fixture
def attacker(
    stack_settings: PlatformSettings, signer_queue: str
) -> Iterator[TemporalSigningClient]:
    """The worker's signing client (what the broadcaster and the Bitcoin sender use),
    with the signing workflows served on a queue of the attacker's own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    queue = f"redteam-wf-{uuid.uuid4().hex[:8]}"

    async def start() -> tuple[Client, Worker, asyncio.Task[None]]:
        client = await connect(
            stack_settings.temporal_address,
            stack_settings.temporal_namespace,
            stack_settings.temporal_transport(),
        )
        worker = Worker(
            client,
            task_queue=queue,
            workflows=[SignEvmWorkflow, SignBtcWorkflow, SignCosmosWorkflow],
        )
        return client, worker, loop.create_task(worker.run())

    client, worker, running = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    yield TemporalSigningClient(
        client,
        loop,
        queue,
        timeout=60,
        signer_queue=signer_queue,
    )
    asyncio.run_coroutine_threadsafe(worker.shutdown(), loop).result(60)
    assert running.done()
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


__all__ = ["approve", "signatures"]


def signatures(url: str, operation: str | None = None) -> int:
    """Rows in the signer's own record (for one operation, or all)."""
    where, params = ("where operation_id = ?", (operation,)) if operation else ("", ())
    with SqlDatabase(url).tx() as conn:
        return int(conn.one(f"select count(*) from signer_signatures {where}", params)[0])
