"""Transactional outbox: events committed with the ledger change that caused them.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sqlite = op.get_context().dialect.name == "sqlite"
    position = (
        "integer primary key autoincrement"
        if sqlite
        else "bigint generated always as identity primary key"
    )
    stamp = "text" if sqlite else "timestamptz"
    op.execute(f"""create table ledger_outbox (
    position {position},
    event_id text not null unique,
    topic text not null,
    event_key text not null,
    payload text not null,
    created_at {stamp} not null,
    published_at {stamp}
)""")
    op.execute(
        "create index ledger_outbox_unpublished on ledger_outbox (position) "
        "where published_at is null"
    )


def downgrade() -> None:
    op.execute("drop table ledger_outbox")
