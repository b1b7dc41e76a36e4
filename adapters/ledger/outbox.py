"""Writing events into the platform database's outbox, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable

from adapters.sqldb import Conn
from sagas.events import Envelope


def emit(conn: Conn, topic: str, events: Iterable[Envelope]) -> None:
    """Queue events for the relay; an event id already queued is not queued again."""
    for event in events:
        conn.run(
            "insert into ledger_outbox (event_id, topic, event_key, payload, created_at) "
            "values (?, ?, ?, ?, ?) on conflict (event_id) do nothing",
            (event.id, topic, event.subject, event.model_dump_json(), conn.time(event.time)),
        )
