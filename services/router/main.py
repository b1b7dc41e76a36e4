"""`python -m services.router.main`: route chain events and bank commands from Kafka to
the sagas on Temporal until stopped."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from adapters.kafka.bus import KafkaEventBus
from adapters.temporal import connect
from sagas.topics import ALL
from services.app.stakes import Stakes
from services.app.withdrawals import Withdrawals
from services.platform import Platform
from services.router.router import EventRouter


async def run(db_url: str | None) -> None:
    platform = Platform.load(db_url, "router")
    s = platform.settings
    client = await connect(s.temporal_address, s.temporal_namespace, s.temporal_transport())
    kafka = s.kafka_client("router")
    bus = KafkaEventBus(
        kafka, client_id="custody-router", replication_factor=s.kafka_replication_factor
    )
    bus.ensure_topics(ALL)
    router = EventRouter(
        client,
        Withdrawals(platform, client),
        bus,
        kafka,
        group=s.router_group,
        start=s.router_start,
        deposit_poll_seconds=s.chain_poll_seconds,
        task_queue=s.saga_task_queue,
        is_ours=lambda address: platform.keys.lookup(address) is not None,
        stakes=Stakes(platform, client),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await router.ready()
    print("router ready", flush=True)
    try:
        while not stop.is_set():
            try:
                await router.step(timeout=0.5)
            except Exception:  # a dependency failed mid-batch: read the batch again
                logging.getLogger("custody.router").exception("batch failed; rewinding")
                router.rewind()
                await asyncio.sleep(1.0)
    finally:
        router.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--db-url", help="default: CUSTODY_LEDGER_URL_ROUTER, else CUSTODY_LEDGER_URL"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(run(args.db_url))


if __name__ == "__main__":
    main()
