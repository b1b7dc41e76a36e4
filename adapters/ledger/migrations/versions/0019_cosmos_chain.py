"""The proof-of-stake chain (decisions 0027, 0028): `cosmos` becomes a chain deposit
addresses and the signer's record may name, beside bitcoin and ethereum; operations may
be stakes and unstakes; `cosmos_transactions` holds each operation's one signed Cosmos
transaction (rebroadcast as it is on a retry).

PostgreSQL swaps the two check constraints; SQLite cannot alter one, so each table is
rebuilt from its own schema text with the wider check (its rows, indexes and the
foreign keys that name it unchanged; migrations run with SQLite's foreign keys off).

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

_TABLES = ("deposit_addresses", "signer_signatures")
_NARROW = "chain in ('bitcoin', 'ethereum')"
_WIDE = "chain in ('bitcoin', 'ethereum', 'cosmos')"
_KINDS_NARROW = "kind in ('withdrawal', 'deposit', 'trade', 'settlement')"
_KINDS_WIDE = "kind in ('withdrawal', 'deposit', 'trade', 'settlement', 'stake', 'unstake')"


def _swap(old: str, new: str, tables: tuple[str, ...] = _TABLES, column: str = "chain") -> None:
    bind = op.get_bind()
    for table in tables:
        if bind.dialect.name == "sqlite":
            _rebuild_sqlite(table, old, new)
            continue
        names = bind.execute(
            sa.text(
                "select conname from pg_constraint where conrelid = cast(:t as regclass) "
                "and contype = 'c' and pg_get_constraintdef(oid) like :c"
            ),
            {"t": table, "c": f"%{column}%"},
        ).scalars()
        for name in list(names):
            op.execute(f'alter table {table} drop constraint "{name}"')
        op.execute(f"alter table {table} add constraint {table}_{column}_check check ({new})")


def _rebuild_sqlite(table: str, old: str, new: str) -> None:
    bind = op.get_bind()
    schema = bind.execute(
        sa.text("select sql from sqlite_master where type = 'table' and name = :t"), {"t": table}
    ).scalar_one()
    if old not in schema:
        raise RuntimeError(f"{table}: the chain check is not the one this migration widens")
    indexes = bind.execute(
        sa.text(
            "select sql from sqlite_master where type = 'index' and tbl_name = :t "
            "and sql is not null"
        ),
        {"t": table},
    ).scalars()
    index_sql = list(indexes)
    # SQLite's own order for a schema change (lang_altertable.html, "other kinds of
    # table schema changes"): new table, copy, drop the old, rename the new. Renaming
    # the old one first would make other tables' foreign keys follow it to the drop.
    # A table renamed into place by an earlier rebuild has its name quoted.
    head = re.match(rf'create table\s+"?{table}"?\s*\(', schema, re.IGNORECASE)
    if head is None:
        raise RuntimeError(f"{table}: unexpected schema text")
    op.execute(f"create table {table}_wide (" + schema[head.end() :].replace(old, new, 1))
    op.execute(f"insert into {table}_wide select * from {table}")
    op.execute(f"drop table {table}")
    op.execute(f"alter table {table}_wide rename to {table}")
    for sql in index_sql:
        op.execute(sql)


def upgrade() -> None:
    _swap(_NARROW, _WIDE)
    _swap(_KINDS_NARROW, _KINDS_WIDE, ("operations",), "kind")
    stamp = "text" if op.get_context().dialect.name == "sqlite" else "timestamptz"
    # One signed transaction per operation (a stake, an unstake, a reward claim, an ATOM
    # withdrawal), and one per account sequence: what the adapter broadcasts again.
    op.execute(f"""create table cosmos_transactions (
    operation_id text primary key,
    kind text not null check (kind in ('send', 'delegate', 'undelegate', 'withdraw_rewards')),
    address text not null,
    sequence bigint not null check (sequence >= 0),
    tx_hash text not null unique,
    raw_tx text not null,
    fee text not null,
    state text not null check (state in ('broadcast', 'succeeded', 'failed')),
    height bigint,
    created_at {stamp} not null,
    unique (address, sequence)
)""")


def downgrade() -> None:
    op.execute("drop table cosmos_transactions")
    _swap(_KINDS_WIDE, _KINDS_NARROW, ("operations",), "kind")
    _swap(_WIDE, _NARROW)
