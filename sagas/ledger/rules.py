"""How each recorded transfer changes the four counters of its two accounts.

One function, used by every ledger implementation when it applies a transfer
and when it rebuilds a balance from the transfer log (as of any sequence), so
the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sagas.ledger import Balance, TransferRecord


@dataclass
class Counters:
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0

    def covers_debits(self) -> bool:
        return self.credits_posted >= self.debits_posted + self.debits_pending

    def non_negative(self) -> bool:
        return (
            min(self.debits_pending, self.debits_posted, self.credits_pending, self.credits_posted)
            >= 0
        )


def apply(record: TransferRecord, debit: Counters, credit: Counters) -> None:
    """Change the debit and credit accounts' counters as `record` says, in place."""
    if record.kind == "transfer":
        debit.debits_posted += record.amount
        credit.credits_posted += record.amount
    elif record.kind == "pending":
        debit.debits_pending += record.amount
        credit.credits_pending += record.amount
    elif record.kind == "post":
        assert record.pending_amount is not None
        debit.debits_pending -= record.pending_amount
        credit.credits_pending -= record.pending_amount
        debit.debits_posted += record.amount
        credit.credits_posted += record.amount
    else:  # void, expire
        assert record.pending_amount is not None
        debit.debits_pending -= record.pending_amount
        credit.credits_pending -= record.pending_amount


def replay(account_id: str, asset: str, records: Iterable[TransferRecord]) -> Balance:
    """The account's balance after `records` (in seq order; others' records are ignored)."""
    mine = Counters()
    scratch = Counters()
    for r in records:
        if r.debit_account == account_id:
            apply(r, mine, scratch)
        elif r.credit_account == account_id:
            apply(r, scratch, mine)
    return Balance(account_id=account_id, asset=asset, **vars(mine))
