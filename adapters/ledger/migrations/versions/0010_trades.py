"""Trades and settlements: operations of kind trade and settlement, the executed trades
with their fiat legs (what settlement nets), settlements and their instructions, and
each client's account at the bank.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_KINDS = "('withdrawal', 'deposit', 'trade', 'settlement')"
_OPERATION_COLUMNS = (
    "id, kind, client_id, asset, chain, amount, destination, request_hash, requested_by, "
    "state, approved, error_code, tx_hash, fee, created_at, updated_at"
)


def upgrade() -> None:
    sqlite = op.get_context().dialect.name == "sqlite"
    stamp = "text" if sqlite else "timestamptz"
    if sqlite:
        # SQLite cannot alter a check constraint: rebuild the table (foreign keys are not
        # enforced on the migration's connection, and the steps keep referring by name).
        op.execute(f"""create table operations_new (
    id text primary key,
    kind text not null check (kind in {_KINDS}),
    client_id text, asset text not null, chain text not null, amount text not null,
    destination text, request_hash text not null, requested_by text not null,
    state text not null, approved boolean not null default false, error_code text,
    tx_hash text, fee text, created_at text not null, updated_at text not null)""")
        op.execute(
            f"insert into operations_new ({_OPERATION_COLUMNS}) "
            f"select {_OPERATION_COLUMNS} from operations"
        )
        op.execute("drop index operations_by_client")
        op.execute("drop table operations")
        op.execute("alter table operations_new rename to operations")
        op.execute("create index operations_by_client on operations (client_id, kind, created_at)")
    else:
        op.execute("alter table operations drop constraint operations_kind_check")
        op.execute(
            f"alter table operations add constraint operations_kind_check check (kind in {_KINDS})"
        )

    op.execute("alter table clients add column iban text")
    op.execute("alter table clients add column bic text")
    op.execute(f"""create table trades (
    operation_id text primary key references operations (id),
    client_id text not null,
    side text not null check (side in ('buy', 'sell')),
    asset text not null,
    currency text not null,
    counterparty text not null,
    client_order_id text not null,
    quote_id text not null,
    trade_id text not null,
    price text not null,
    quantity text not null,
    lp_notional text not null,
    fee text not null,
    client_fiat text not null,
    executed_at {stamp} not null,
    settlement_id text
)""")
    op.execute("create index trades_unsettled on trades (counterparty, settlement_id)")


def downgrade() -> None:
    op.execute("drop table trades")
