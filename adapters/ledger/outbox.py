"""Writing events into the platform database's outbox, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable

from adapters.sqldb import Conn
from sagas.events import Envelope


def emit(conn: Conn, topic: str, events: Iterable[Envelope]) -> None:
    """Queue events for the relay; an event id already queued is not queued again."""
    head = "insert into ledger_outbox (event_id, topic, event_key, payload, created_at)"
    rows = [(e.id, topic, e.subject, e.model_dump_json(), conn.time(e.time)) for e in events]
    if not rows:
        return
    if conn.sqlite:
        conn.values(head, rows, "on conflict (event_id) do nothing")
        return
    # In the order given: the relay publishes by position, and one account's events must
    # reach the topic in the order its entries were made.
    select, params = conn.ordered_rows(
        ("event_id text", "topic text", "event_key text", "payload text", "created_at timestamptz"),
        rows,
    )
    conn.run(f"{head} {select} on conflict (event_id) do nothing", params)
