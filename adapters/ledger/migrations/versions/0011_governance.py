"""Governance as a signed chain (issue 12 point 5, decision 0014): the genesis, the
proposals with the approvals collected, and the applied records. Nothing here is
trusted: every reader verifies the chain from the genesis whose hash it was given.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    stamp = "text" if op.get_context().dialect.name == "sqlite" else "timestamptz"
    op.execute(f"""create table governance_genesis (
    hash text primary key,
    body text not null,
    created_at {stamp} not null
)""")
    op.execute(f"""create table governance_proposals (
    id text primary key,
    kind text not null,
    intent text not null,
    intent_hash text not null unique,
    proposed_by text not null,
    state text not null check (state in ('pending', 'applied', 'refused')),
    reason text,
    record_seq integer,
    created_at {stamp} not null,
    updated_at {stamp} not null
)""")
    op.execute(f"""create table governance_approvals (
    proposal_id text not null references governance_proposals (id),
    key_id text not null,
    operator text not null,
    approval text not null,
    created_at {stamp} not null,
    primary key (proposal_id, key_id)
)""")
    op.execute("""create table governance_records (
    seq integer primary key check (seq >= 1),
    intent_hash text not null unique,
    body text not null,
    proposal_id text
)""")


def downgrade() -> None:
    for table in ("records", "approvals", "proposals", "genesis"):
        op.execute(f"drop table governance_{table}")
