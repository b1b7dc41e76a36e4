"""The balances projector: rebuilds balances from the events topic alone and publishes
the latest balance of each account to the compacted balances topic.

Every start replays from offset 0 into an empty projection (the read model is
derived state; the events topic is the source of truth), then follows new events.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sagas.events import Envelope
from sagas.ledger.events import BALANCE, BalanceSnapshot
from sagas.ledger.projection import BalanceProjection
from sagas.ports import EventBus
from sagas.topics import BALANCES, EVENTS


class Projector:
    def __init__(self, bus: EventBus, batch: int = 5_000) -> None:
        self.bus = bus
        self.projection = BalanceProjection()
        self._group = f"custody-projector-{uuid.uuid4().hex}"  # new: starts at offset 0
        self._batch = batch

    def catch_up(self, timeout: float = 10.0) -> set[str]:
        """Fold in every event not seen yet; the accounts whose balance changed."""
        changed: set[str] = set()
        while events := self.bus.read(EVENTS.name, self._group, self._batch, timeout):
            for event in events:
                if self.projection.apply(event):
                    changed.add(event.subject)
        return changed

    def publish(self, accounts: Iterable[str]) -> int:
        """Publish these accounts' balances to the compacted topic (latest wins)."""
        items = [
            (
                BALANCES.name,
                Envelope(
                    source="/custody/projector",
                    type=BALANCE,
                    subject=account,
                    data=BalanceSnapshot.of(self.projection.balance(account)).model_dump(
                        mode="json"
                    ),
                ),
            )
            for account in sorted(accounts)
        ]
        self.bus.publish_all(items)
        return len(items)


def replay(bus: EventBus, timeout: float = 10.0) -> BalanceProjection:
    """Read the events topic from offset 0 into an empty projection, until caught up."""
    projector = Projector(bus)
    projector.catch_up(timeout)
    return projector.projection


def publish_balances(bus: EventBus, projection: BalanceProjection) -> int:
    """Publish every account's balance in `projection` to the compacted topic."""
    projector = Projector(bus)
    projector.projection = projection
    return projector.publish(projection.counters)
