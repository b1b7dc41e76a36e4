"""Small builders shared by tests and benchmarks."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sagas.ledger import Account, AccountKind, Asset, Transfer
from sagas.ports import Ledger


@dataclass(frozen=True)
class FundedBook:
    """A fresh asset with an omnibus and two client accounts, `a` funded from the omnibus."""

    asset: str
    omnibus: str
    a: str
    b: str
    suffix: str


def funded_book(ledger: Ledger, tag: str, funds: int, decimals: int = 8) -> FundedBook:
    suffix = uuid.uuid4().hex[:8]
    asset = f"T{suffix.upper()}"
    ledger.register_asset(Asset(code=asset, decimals=decimals))
    omnibus, a, b = (f"{tag}-{x}-{suffix}" for x in ("omni", "a", "b"))
    ledger.open_account(Account(id=omnibus, asset=asset, kind=AccountKind.OMNIBUS))
    for account in (a, b):
        ledger.open_account(Account(id=account, asset=asset, kind=AccountKind.CLIENT_AVAILABLE))
    ledger.submit(
        [
            Transfer(
                id=f"fund-{suffix}",
                debit_account=omnibus,
                credit_account=a,
                asset=asset,
                amount=funds,
            )
        ]
    )
    return FundedBook(asset, omnibus, a, b, suffix)
