"""Bitcoin: the platform's own UTXO set and every signed transaction, recorded before sending.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    stamp = "text" if op.get_context().dialect.name == "sqlite" else "timestamptz"
    op.execute("""create table btc_utxos (
    txid text not null,
    vout integer not null check (vout >= 0),
    address text not null references deposit_addresses (address),
    amount bigint not null check (amount > 0),
    spent_by text,
    primary key (txid, vout)
)""")
    # One row per attempt: a fee bump is a new attempt spending the same inputs.
    op.execute(f"""create table btc_transactions (
    operation_id text not null,
    attempt integer not null check (attempt >= 0),
    txid text not null unique,
    raw_tx text not null,
    outputs text not null,
    fee bigint not null check (fee >= 0),
    state text not null check (state in ('signed', 'broadcast', 'replaced')),
    created_at {stamp} not null,
    primary key (operation_id, attempt)
)""")


def downgrade() -> None:
    op.execute("drop table btc_transactions")
    op.execute("drop table btc_utxos")
