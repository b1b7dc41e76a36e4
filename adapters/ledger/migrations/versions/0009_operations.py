"""Operations (withdrawals, deposits) as the API shows them, with their timeline of steps.

The sagas on Temporal are the authority on what happens next; these rows are what
happened so far, written by the sagas' activities together with the events that
report it (transactional outbox), and what the signer checks before it signs.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    stamp = "text" if op.get_context().dialect.name == "sqlite" else "timestamptz"
    op.execute(f"""create table operations (
    id text primary key,
    kind text not null check (kind in ('withdrawal', 'deposit')),
    client_id text,
    asset text not null,
    chain text not null,
    amount text not null,
    destination text,
    request_hash text not null,
    requested_by text not null,
    state text not null,
    approved boolean not null default false,
    error_code text,
    tx_hash text,
    fee text,
    created_at {stamp} not null,
    updated_at {stamp} not null
)""")
    op.execute("create index operations_by_client on operations (client_id, kind, created_at)")
    op.execute(f"""create table operation_steps (
    operation_id text not null references operations (id),
    step text not null,
    detail text not null,
    at {stamp} not null,
    primary key (operation_id, step)
)""")
    op.execute(f"""create table clients (
    id text primary key,
    name text not null,
    created_by text not null,
    created_at {stamp} not null
)""")

    # The API's answers to POSTs by (caller, path, Idempotency-Key): a retry gets the
    # first answer; the same key with another body is refused.
    op.execute(f"""create table api_idempotency (
    scope text primary key,
    request_hash text not null,
    status integer not null,
    body text not null,
    created_at {stamp} not null
)""")


def downgrade() -> None:
    op.execute("drop table api_idempotency")
    op.execute("drop table operation_steps")
    op.execute("drop table operations")
    op.execute("drop table clients")
