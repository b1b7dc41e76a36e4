"""The outbox relay: publishes committed ledger events to Kafka, then marks them.

At-least-once by construction: a crash between publishing and marking means the
next run publishes those events again, with the same event ids, and consumers
drop the repeats. Nothing is marked before Kafka acknowledged it (acks=all).
Run one relay per ledger database.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sagas.ports import EventBus, Outbox

log = logging.getLogger("custody.relay")


class Relay:
    def __init__(
        self,
        outbox: Outbox,
        bus: EventBus,
        batch_size: int = 500,
        after_publish: Callable[[], None] = lambda: None,
    ) -> None:
        self._outbox = outbox
        self._bus = bus
        self._batch = batch_size
        self._after_publish = after_publish  # fault-injection point for tests

    def run_once(self) -> int:
        """Publish and mark one batch; the number of events relayed."""
        items = self._outbox.unpublished(self._batch)
        if not items:
            return 0
        self._bus.publish_all([(item.topic, item.event) for item in items])
        self._after_publish()
        self._outbox.mark_published([item.position for item in items])
        log.info("relayed %d events up to outbox position %d", len(items), items[-1].position)
        return len(items)

    def drain(self) -> int:
        """Relay until the outbox is empty; the number of events relayed."""
        total = 0
        while n := self.run_once():
            total += n
        return total

    def run(self, stop: threading.Event, idle_seconds: float = 0.2) -> None:
        """Relay until stopped. A failed batch (Kafka or the database not answering) is
        logged and tried again: it was not marked, so nothing is lost, and a batch sent
        twice carries the same event ids."""
        while not stop.is_set():
            try:
                if self.run_once() == 0:
                    stop.wait(idle_seconds)
            except Exception:
                log.exception("relay batch failed; retrying in 1 s")
                stop.wait(1.0)
