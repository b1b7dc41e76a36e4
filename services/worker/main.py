"""`python -m services.worker.main`: run the platform's Temporal workers until stopped."""

from __future__ import annotations

import asyncio

from adapters.temporal import connect
from services.settings import PlatformSettings
from services.worker.bootstrap import build_workers


async def run() -> None:
    settings = PlatformSettings.load()
    client = await connect(settings.temporal_address, settings.temporal_namespace)
    workers = build_workers(client)
    await asyncio.gather(*(w.run() for w in workers))


if __name__ == "__main__":
    asyncio.run(run())
