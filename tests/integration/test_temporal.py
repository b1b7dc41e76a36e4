"""Temporal: the smoke workflow runs on a worker built by the worker's composition root."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

from temporalio.client import Client, WorkflowExecutionStatus

from adapters.temporal import connect
from sagas.smoke import TASK_QUEUE, ReleaseSignal, SmokeInput, SmokeResult
from services.settings import PlatformSettings
from services.worker.bootstrap import build_workers


async def _run(settings: PlatformSettings) -> tuple[SmokeResult, WorkflowExecutionStatus | None]:
    client = await connect(
        settings.temporal_address, settings.temporal_namespace, settings.temporal_transport()
    )
    return await smoke(client, "ledger says hi", "op-7")


async def smoke(
    client: Client, message: str, operator: str
) -> tuple[SmokeResult, WorkflowExecutionStatus | None]:
    """Run the smoke workflow on the worker's own composition root, released by
    `operator`: its result and final status."""
    workers = build_workers(client)
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        handle = await client.start_workflow(
            "Smoke",
            SmokeInput(message=message, wait_for_release=True),
            id=f"it-smoke-{uuid.uuid4().hex}",
            task_queue=TASK_QUEUE,
            result_type=SmokeResult,
        )
        await handle.signal("release", ReleaseSignal(operator=operator))
        result = await asyncio.wait_for(handle.result(), 60)
        status = (await handle.describe()).status
        return result, status
    finally:
        for w in workers:
            await w.shutdown()
        await asyncio.gather(*tasks, return_exceptions=True)


def test_smoke_workflow_returns_the_activity_result(stack_settings: PlatformSettings) -> None:
    result, status = asyncio.run(_run(stack_settings))
    assert result == SmokeResult(
        message="ledger says hi",
        sha256=hashlib.sha256(b"ledger says hi").hexdigest(),
        released_by="op-7",
    )
    assert status == WorkflowExecutionStatus.COMPLETED
