"""Balances rebuilt from the events topic alone.

Applies each entry's change with the same rules the ledger used (so replaying
from offset 0 gives the ledger's balances), drops repeats by event id (a relay
may publish an event more than once), and checks the result against the
counters the event says the account had: a difference is a reconciliation break.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sagas.events import Envelope
from sagas.ledger import Balance, TransferRecord
from sagas.ledger.events import ENTRY_RECORDED, EntryRecorded, balance_from_event
from sagas.ledger.rules import Counters, apply


@dataclass
class BalanceProjection:
    counters: dict[str, Counters] = field(default_factory=dict)
    assets: dict[str, str] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    breaks: list[str] = field(default_factory=list)

    def apply(self, event: Envelope) -> bool:
        """Fold one event in; False if it was a repeat (or not a ledger entry)."""
        if event.type != ENTRY_RECORDED or event.id in self.seen:
            return False
        self.seen.add(event.id)
        entry = EntryRecorded.model_validate(event.data)
        record = TransferRecord(
            seq=entry.seq,
            id=entry.transfer_id,
            kind=entry.kind,
            debit_account=entry.account if entry.side == "debit" else entry.counterparty_account,
            credit_account=entry.account if entry.side == "credit" else entry.counterparty_account,
            asset=entry.asset,
            amount=int(entry.amount),
            pending_id=entry.pending_id,
            pending_amount=None if entry.pending_amount is None else int(entry.pending_amount),
            recorded_at=event.time,
        )
        mine = self.counters.setdefault(entry.account, Counters())
        self.assets[entry.account] = entry.asset
        if entry.side == "debit":
            apply(record, mine, Counters())
        else:
            apply(record, Counters(), mine)
        self._check(event)
        return True

    def balance(self, account: str) -> Balance:
        c = self.counters.get(account, Counters())
        return Balance(account_id=account, asset=self.assets.get(account, ""), **vars(c))

    def _check(self, event: Envelope) -> None:
        # Events of one account share a partition key, so they arrive in ledger order
        # and the counters the event reports must be exactly what we computed.
        reported = balance_from_event(event)
        if self.balance(reported.account_id) != reported:
            self.breaks.append(f"{event.id}: {reported.account_id}")
