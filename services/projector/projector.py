"""The balances projector: rebuilds balances from the events topic alone and publishes
the latest balance of each account to the compacted balances topic."""

from __future__ import annotations

import uuid

from sagas.events import Envelope
from sagas.ledger.events import BALANCE, BalanceSnapshot
from sagas.ledger.projection import BalanceProjection
from sagas.ports import EventBus
from sagas.topics import BALANCES, EVENTS


def replay(bus: EventBus, timeout: float = 10.0, batch: int = 5_000) -> BalanceProjection:
    """Read the events topic from offset 0 into an empty projection, until caught up."""
    projection = BalanceProjection()
    group = f"custody-replay-{uuid.uuid4().hex}"  # a new group starts at the beginning
    while events := bus.read(EVENTS.name, group, max_events=batch, timeout=timeout):
        for event in events:
            projection.apply(event)
    return projection


def publish_balances(bus: EventBus, projection: BalanceProjection) -> int:
    """Publish every account's balance to the compacted topic (latest wins per account)."""
    items = [
        (
            BALANCES.name,
            Envelope(
                source="/custody/projector",
                type=BALANCE,
                subject=account,
                data=BalanceSnapshot.of(projection.balance(account)).model_dump(mode="json"),
            ),
        )
        for account in sorted(projection.counters)
    ]
    bus.publish_all(items)
    return len(items)
