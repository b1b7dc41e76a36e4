"""The audit writer: every event on the events topic, once, into the hash chain."""

from __future__ import annotations

import logging
import time

from adapters.kafka.audit_log import KafkaAuditAppender
from sagas.audit import chain_batch
from sagas.ports import AuditKeys

log = logging.getLogger("custody.audit")


class AuditWriter:
    def __init__(self, appender: KafkaAuditAppender, keys: AuditKeys, batch: int = 500) -> None:
        self._appender = appender
        self._keys = keys
        self._batch = batch
        self._next_seq, self._head = 0, ""
        self._seen: set[str] = set()

    def start(self) -> None:
        self._next_seq, self._head, self._seen = self._appender.start()
        log.info("audit chain resumes at seq %d", self._next_seq)

    def run_once(self, timeout: float = 1.0) -> tuple[int, int]:
        """Append one batch of new events: (events read, records written)."""
        polled = self._appender.poll(self._batch, timeout)
        if not polled:
            return 0, 0
        fresh, ids = [], set()
        for event in polled:  # the relay is at-least-once: an event id enters the chain once
            if event.id not in self._seen and event.id not in ids:
                fresh.append(event)
                ids.add(event.id)
        try:
            records = chain_batch(self._next_seq, self._head, fresh, self._keys)
            self._appender.append(records)  # commits the offsets even if all were repeats
        except Exception:
            # Nothing was committed: go back, so these events are read again, not skipped.
            self._appender.rewind()
            raise
        if records:
            self._next_seq, self._head = records[-1].seq + 1, records[-1].hash
            self._seen |= ids
        return len(polled), len(records)

    def drain(self, max_seconds: float = 120.0) -> int:
        """Append until every event published so far is in the chain; records written."""
        total = 0
        deadline = time.monotonic() + max_seconds
        while time.monotonic() < deadline:
            read, written = self.run_once(timeout=0.5)
            total += written
            if read == 0 and self._appender.caught_up():
                return total
        raise TimeoutError(f"audit writer not caught up after {max_seconds} s")
