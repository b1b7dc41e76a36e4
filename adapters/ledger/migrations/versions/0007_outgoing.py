"""The chain watcher's record of the platform's own transactions in blocks.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""create table chain_outgoing (
    id text primary key,
    chain text not null,
    operation_id text not null,
    tx_hash text not null,
    block_height bigint not null,
    block_hash text not null,
    state text not null check (state in ('seen', 'final', 'reorged')),
    revival integer not null default 0 check (revival >= 0)
)""")
    op.execute(
        "create index chain_outgoing_open on chain_outgoing (chain, block_height) "
        "where state = 'seen'"
    )


def downgrade() -> None:
    op.execute("drop table chain_outgoing")
