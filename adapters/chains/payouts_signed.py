"""What the chains' payouts share (adapters/chains/<chain>/payouts.py; the registry in
adapters/chains/payouts.py)."""

from __future__ import annotations

from adapters.operations.signer_record import member_claim
from adapters.sqldb import SqlDatabase


def signed(db: SqlDatabase, operation_id: str) -> bool:
    """Whether the signer's record holds a signature paying the operation (alone, or in a
    Bitcoin batch): its claims are written only with a signature."""
    with db.tx() as conn:
        return bool(
            conn.one(
                "select 1 from signer_claims where operation_id = ? or claim = ?",
                (operation_id, member_claim(operation_id)),
            )
        )
