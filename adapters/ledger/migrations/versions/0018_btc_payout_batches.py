"""Bitcoin payout batching (decision 0025): withdrawals wait in a queue, a batch takes
the waiting ones and fixes its plan (members, coins, outputs, change, fee) before it is
signed, so a retry signs exactly the same transaction. The batch's transactions are
`btc_transactions` rows under the batch id, as a single payment's are under its own.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    stamp = "text" if op.get_context().dialect.name == "sqlite" else "timestamptz"
    op.execute(f"""create table btc_payout_queue (
    operation_id text primary key,
    wallet_id text not null,
    destination text not null,
    amount bigint not null check (amount > 0),
    queued_at {stamp} not null,
    batch_id text,
    position integer check (position >= 0),
    solo integer not null default 0 check (solo in (0, 1)),
    refusal text check (refusal in ('cannot_pay', 'denied')),
    reason text,
    check ((batch_id is null) = (position is null)),
    check (refusal is null or batch_id is null)
)""")
    op.execute(
        "create index btc_payout_queue_waiting on btc_payout_queue (wallet_id, queued_at) "
        "where batch_id is null and refusal is null"
    )
    op.execute("create index btc_payout_queue_batch on btc_payout_queue (batch_id)")
    op.execute(f"""create table btc_batches (
    batch_id text primary key,
    wallet_id text not null,
    plan text not null,
    state text not null check (state in ('formed', 'refused', 'released')),
    created_at {stamp} not null,
    refused_at {stamp},
    reason text
)""")


def downgrade() -> None:
    op.execute("drop table btc_batches")
    op.execute("drop table btc_payout_queue")
