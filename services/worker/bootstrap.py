"""Composition root of the Temporal worker: every dependency is a parameter."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.worker import Worker

from sagas.smoke import TASK_QUEUE as SMOKE_QUEUE
from sagas.smoke.activities import SmokeActivities
from sagas.smoke.workflows import SmokeWorkflow


def build_workers(client: Client) -> list[Worker]:
    smoke = SmokeActivities()
    return [
        Worker(
            client, task_queue=SMOKE_QUEUE, workflows=[SmokeWorkflow], activities=[smoke.digest]
        ),
    ]
