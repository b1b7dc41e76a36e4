"""Ethereum nonces reserved per operation before it is signed, so the sender's nonce row
is held for a moment, not for the signer's round trip (issue 13, decision 0021).

A row holds one nonce of a sender for one operation (or for none: released after a
refusal, taken first by the next operation so no gap is left). Once the operation's
transaction is recorded in evm_transactions the row stays as the record of the
reservation.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sqlite = op.get_context().dialect.name == "sqlite"
    stamp = "text" if sqlite else "timestamptz"
    op.execute(f"""create table evm_nonce_reservations (
    chain_id bigint not null,
    sender text not null,
    nonce bigint not null check (nonce >= 0),
    operation_id text,
    reserved_at {stamp} not null,
    primary key (chain_id, sender, nonce)
)""")
    op.execute(
        "create unique index evm_one_reservation_per_operation on evm_nonce_reservations "
        "(chain_id, sender, operation_id) where operation_id is not null"
    )
    op.execute(
        "create index evm_free_nonces on evm_nonce_reservations (chain_id, sender, nonce) "
        "where operation_id is null"
    )


def downgrade() -> None:
    op.execute("drop table evm_nonce_reservations")
