"""EVM nonces per sending address and every signed transaction, recorded before sending.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    stamp = "text" if op.get_context().dialect.name == "sqlite" else "timestamptz"
    op.execute("""create table evm_nonces (
    chain_id bigint not null,
    sender text not null,
    next_nonce bigint not null check (next_nonce >= 0),
    primary key (chain_id, sender)
)""")
    op.execute(f"""create table evm_transactions (
    operation_id text not null,
    attempt integer not null check (attempt >= 0),
    chain_id bigint not null,
    sender text not null,
    nonce bigint not null check (nonce >= 0),
    tx_hash text not null unique,
    raw_tx text not null,
    max_fee text not null,
    max_priority_fee text not null,
    state text not null check (state in ('signed', 'broadcast', 'mined', 'replaced', 'dropped')),
    created_at {stamp} not null,
    primary key (operation_id, attempt)
)""")
    # A nonce carries one live transaction; a fee bump first marks the old one replaced.
    op.execute(
        "create unique index evm_one_live_tx_per_nonce on evm_transactions "
        "(chain_id, sender, nonce) where state in ('signed', 'broadcast', 'mined')"
    )
    # An operation has one live attempt: two concurrent sends of it cannot both sign.
    op.execute(
        "create unique index evm_one_live_tx_per_operation on evm_transactions "
        "(operation_id) where state in ('signed', 'broadcast', 'mined')"
    )
    op.execute("create index evm_unsent on evm_transactions (state) where state = 'signed'")


def downgrade() -> None:
    op.execute("drop table evm_transactions")
    op.execute("drop table evm_nonces")
