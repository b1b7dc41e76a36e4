"""Chain watcher state: the recent blocks it processed (for reorg detection) and its
deposit observations.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    stamp = "text" if op.get_context().dialect.name == "sqlite" else "timestamptz"
    op.execute("""create table chain_blocks (
    chain text not null,
    height bigint not null check (height >= 0),
    block_hash text not null,
    primary key (chain, height)
)""")
    op.execute(f"""create table chain_observations (
    id text primary key,
    chain text not null,
    address text not null,
    account_id text not null,
    asset text not null,
    amount text not null,
    tx_hash text not null,
    position text not null,
    block_height bigint not null,
    block_hash text not null,
    state text not null check (state in ('seen', 'final', 'reorged')),
    revival integer not null default 0 check (revival >= 0),
    created_at {stamp} not null
)""")
    op.execute(
        "create index chain_observations_open on chain_observations "
        "(chain, block_height) where state = 'seen'"
    )


def downgrade() -> None:
    op.execute("drop table chain_observations")
    op.execute("drop table chain_blocks")
