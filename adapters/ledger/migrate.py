"""Bring a ledger database to the newest schema with Alembic (idempotent).

On PostgreSQL the owner runs the migrations and then re-grants the process roles
(adapters/ledger/grants.py), so a new table is never left reachable by the wrong
process or by none. A process role finds the schema current and does nothing: it may
read the version table, never change the schema."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from adapters.ledger.grants import apply_grants

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_MIGRATION_LOCK = 0x637573746F6479  # "custody"
VERSION_TABLE = "ledger_schema_version"


def sqlalchemy_url(url: str) -> str:
    """Our URLs (sqlite:///path, postgresql://...) as SQLAlchemy wants them."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        return url
    raise ValueError(f"unsupported ledger URL scheme: {url.split(':', 1)[0]}")


def head_revision() -> str:
    """The newest migration's revision, from the file names (`NNNN_<what>.py`, revision
    "NNNN", each down from the one before: a unit test holds this to Alembic's own
    head). A process that finds its schema current never loads Alembic (half a second
    of every start)."""
    return max(p.name[:4] for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


def _config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolates "%": escape it, or URL-encoded passwords break.
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return config


def _current(conn: psycopg.Connection[Any]) -> str | None:
    exists = conn.execute("select to_regclass(%s)", (VERSION_TABLE,)).fetchone()
    if exists is None or exists[0] is None:
        return None
    row = conn.execute(f"select version_num from {VERSION_TABLE}").fetchone()
    return None if row is None else str(row[0])


def upgrade(url: str, revision: str = "head") -> None:
    # Alembic is imported only where it runs: a current schema needs none of it.
    if url.startswith("sqlite:///"):
        from alembic import command

        command.upgrade(_config(url), revision)  # SQLite serialises DDL with its write lock
        return
    target = head_revision() if revision == "head" else None
    # Several services may start against a fresh database at once: one migrates, the
    # others wait on this lock and then find nothing to do.
    with psycopg.connect(url, autocommit=True) as conn:
        if target is not None and _current(conn) == target:
            return  # current: nothing to migrate, nothing new to grant
        conn.execute("select pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            from alembic import command

            command.upgrade(_config(url), revision)
            apply_grants(conn)
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
