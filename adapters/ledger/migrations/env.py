"""Alembic environment for the ledger schema (SQLite and PostgreSQL)."""

from __future__ import annotations

import sqlite3
from typing import Any

from alembic import context
from sqlalchemy import create_engine, event

from adapters.ledger.sqlite_functions import register


def _run() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _functions(dbapi_conn: Any, _record: Any) -> None:
            if isinstance(dbapi_conn, sqlite3.Connection):
                register(dbapi_conn)

    with engine.connect() as connection:
        context.configure(connection=connection, version_table="ledger_schema_version")
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


_run()
