"""Intents and the operators' signed approvals of them, as they were handed in, and the
nonces of accepted client requests.

Untrusted storage: the signer verifies every approval's signature against the
governance chain before it counts one, so a row written here by anyone else is
worth nothing without the operator's key.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    stamp = "text" if op.get_context().dialect.name == "sqlite" else "timestamptz"
    op.execute(f"""create table intents (
    intent_hash text primary key,
    operation_id text not null,
    kind text not null,
    intent text not null,
    required integer not null,
    created_at {stamp} not null,
    unique (operation_id, kind)
)""")
    op.execute(f"""create table intent_approvals (
    intent_hash text not null references intents (intent_hash),
    key_id text not null,
    signature text not null,
    operator text not null,
    approval text not null,
    at {stamp} not null,
    primary key (intent_hash, key_id, signature)
)""")

    # Client request nonces the API has accepted: a signed request counts once.
    op.execute(f"""create table request_nonces (
    key_id text not null,
    nonce text not null,
    keep_until {stamp} not null,
    primary key (key_id, nonce)
)""")


def downgrade() -> None:
    op.execute("drop table request_nonces")
    op.execute("drop table intent_approvals")
    op.execute("drop table intents")
