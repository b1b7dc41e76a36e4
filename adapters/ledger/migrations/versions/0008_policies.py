"""Withdrawal policies, versioned: a change is a new row, never an update.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    stamp = "text" if op.get_context().dialect.name == "sqlite" else "timestamptz"
    op.execute(f"""create table policy_versions (
    client_id text not null,
    asset text not null,
    version integer not null check (version >= 1),
    rules text not null,
    created_by text not null,
    created_at {stamp} not null,
    primary key (client_id, asset, version)
)""")


def downgrade() -> None:
    op.execute("drop table policy_versions")
