"""Following the events topic as one reader of its own (the API's server-sent events).

Every partition from its beginning or its end, read-committed, in a consumer group of
its own that commits nothing: each reader sees the whole topic and disturbs no other.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Literal

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

from sagas.events import Envelope
from sagas.topics import EVENTS


class EventTail:
    def __init__(self, client_config: dict[str, Any], start: Literal["beginning", "end"]) -> None:
        self._consumer = Consumer(
            {
                **client_config,
                "group.id": f"custody-sse-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        self._start = start

    async def open(self) -> None:
        """Assign every partition at the start: events from here on are seen."""
        meta = await asyncio.to_thread(self._consumer.list_topics, EVENTS.name, 10)
        partitions = sorted(meta.topics[EVENTS.name].partitions)
        offset = OFFSET_BEGINNING if self._start == "beginning" else OFFSET_END
        self._consumer.assign([TopicPartition(EVENTS.name, p, offset) for p in partitions])

    async def next(self, timeout: float) -> Envelope | None:
        """The next event, or None if none came within `timeout` seconds (a message that
        is not an event is skipped, and does not count as quiet). After `open`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            msg = await asyncio.to_thread(self._consumer.poll, left)
            if msg is None:
                return None
            if msg.error() is not None or msg.value() is None:
                continue
            try:
                return Envelope.from_json(msg.value() or b"")
            except ValueError:
                continue
        return None

    async def close(self) -> None:
        await asyncio.to_thread(self._consumer.close)
