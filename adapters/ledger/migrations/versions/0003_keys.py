"""Wallets (wrapped seeds, account xpubs) and deposit addresses.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    stamp = "text" if op.get_context().dialect.name == "sqlite" else "timestamptz"
    op.execute(f"""create table key_wallets (
    wallet_id text primary key,
    -- Only ciphertext from the key service fits here; a seed in clear cannot be stored.
    wrapped_seed text not null check (wrapped_seed like 'vault:v%' or wrapped_seed like 'fake:v%'),
    xpubs text not null,
    btc_network text not null,
    created_at {stamp} not null
)""")
    # An address belongs to one client account for ever: never reused, never re-derived
    # for someone else (unique address, unique path, one address per account).
    op.execute("""create table deposit_addresses (
    address text primary key,
    account_id text not null unique,
    owner text,
    chain text not null check (chain in ('bitcoin', 'ethereum')),
    asset text not null,
    wallet_id text not null references key_wallets (wallet_id),
    change integer not null check (change in (0, 1)),
    address_index integer not null check (address_index >= 0),
    unique (wallet_id, chain, change, address_index)
)""")


def downgrade() -> None:
    op.execute("drop table deposit_addresses")
    op.execute("drop table key_wallets")
