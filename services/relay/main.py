"""`python -m services.relay.main`: relay the ledger outbox to Kafka until stopped.

--until-empty relays what is there and exits. --pause-after-publish FILE is for
crash tests only: after the first batch is on Kafka and before it is marked, it
creates FILE and waits to be killed.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from pathlib import Path

from adapters.kafka.bus import KafkaEventBus
from adapters.ledger.sql import SqlLedger
from sagas.topics import ALL
from services.relay.relay import Relay
from services.settings import PlatformSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--ledger-url", help="default: CUSTODY_LEDGER_URL_RELAY, else CUSTODY_LEDGER_URL"
    )
    parser.add_argument("--until-empty", action="store_true")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--pause-after-publish", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    settings = PlatformSettings.load()
    ledger = SqlLedger(args.ledger_url or settings.db_url("relay"))
    bus = KafkaEventBus(
        settings.kafka_client("relay"),
        client_id="custody-relay",
        replication_factor=settings.kafka_replication_factor,
    )
    bus.ensure_topics(ALL)

    def pause() -> None:
        if args.pause_after_publish is not None:
            args.pause_after_publish.touch()
            while True:
                time.sleep(3600)

    relay = Relay(ledger, bus, batch_size=args.batch_size, after_publish=pause)
    if args.until_empty:
        print(f"relayed {relay.drain()} events", flush=True)
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("relay ready", flush=True)
    relay.run(stop)


if __name__ == "__main__":
    main()
