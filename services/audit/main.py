"""`python -m services.audit.main`: chain every event into the audit topic until stopped.

--until-idle appends what is there and exits after 5 s without new events.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from adapters.kafka import Connection
from adapters.kafka.audit_log import KafkaAuditAppender
from adapters.kafka.bus import KafkaEventBus
from adapters.keys.openbao import OpenBaoAuditKeys
from sagas.topics import ALL, AUDIT, EVENTS
from services.audit.writer import AuditWriter
from services.settings import PlatformSettings


def build_writer(
    settings: PlatformSettings,
    events_topic: str = EVENTS.name,
    audit_topic: str = AUDIT.name,
    transactional_id: str = "custody-audit-writer",
    group: str = "custody-audit",
    kafka: Connection | None = None,
) -> AuditWriter:
    """The audit writer, on Kafka as the `audit` principal unless `kafka` says otherwise
    (tests on their own topics and transactional ids: the admin)."""
    keys = OpenBaoAuditKeys(settings.openbao_addr, *settings.approle("custody-audit"))
    appender = KafkaAuditAppender(
        kafka if kafka is not None else settings.kafka_client("audit"),
        events_topic,
        audit_topic,
        transactional_id=transactional_id,
        group=group,
    )
    return AuditWriter(appender, keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--until-idle", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = PlatformSettings.load()
    KafkaEventBus(
        settings.kafka_client("audit"), replication_factor=settings.kafka_replication_factor
    ).ensure_topics(ALL)
    writer = build_writer(settings)
    writer.start()
    print("audit writer ready", flush=True)
    if args.until_idle:
        print(f"appended {writer.drain()} audit records", flush=True)
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set():
        writer.run_once(timeout=1.0)


if __name__ == "__main__":
    main()
