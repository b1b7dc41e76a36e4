"""Widening a check constraint in a migration: PostgreSQL swaps the constraint; SQLite
cannot alter one, so the table is rebuilt from its own schema text with the wider check
(its rows, indexes and the foreign keys that name it unchanged; migrations run with
SQLite's foreign keys off). Used by migrations 0019 and 0020."""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op


def swap(old: str, new: str, tables: tuple[str, ...], column: str) -> None:
    bind = op.get_bind()
    for table in tables:
        if bind.dialect.name == "sqlite":
            rebuild_sqlite(table, old, new)
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


def rebuild_sqlite(table: str, old: str, new: str) -> None:
    bind = op.get_bind()
    schema = bind.execute(
        sa.text("select sql from sqlite_master where type = 'table' and name = :t"), {"t": table}
    ).scalar_one()
    if old not in schema:
        raise RuntimeError(f"{table}: the check is not the one this migration widens")
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
