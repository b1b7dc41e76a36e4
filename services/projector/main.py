"""`python -m services.projector.main`: rebuild balances from the events topic, publish them
to the compacted balances topic, then follow new events until stopped (--once: exit
after the rebuild)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from adapters.kafka.bus import KafkaEventBus
from sagas.topics import ALL
from services.projector.projector import Projector
from services.settings import PlatformSettings

log = logging.getLogger("custody.projector")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--once", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = PlatformSettings.load()
    bus = KafkaEventBus(
        settings.kafka_client("projector"),
        client_id="custody-projector",
        replication_factor=settings.kafka_replication_factor,
    )
    bus.ensure_topics(ALL)
    projector = Projector(bus)
    published = projector.publish(projector.catch_up())
    print(f"rebuilt {published} balances from {len(projector.projection.seen)} events", flush=True)
    print("projector ready", flush=True)
    if args.once:
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set():
        changed = projector.catch_up(timeout=1.0)
        if changed:
            log.info("published %d balances", projector.publish(changed))
        else:
            stop.wait(0.5)


if __name__ == "__main__":
    main()
