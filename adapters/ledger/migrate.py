"""Bring a ledger database to the newest schema with Alembic (idempotent)."""

from __future__ import annotations

from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_MIGRATION_LOCK = 0x637573746F6479  # "custody"


def sqlalchemy_url(url: str) -> str:
    """Our URLs (sqlite:///path, postgresql://...) as SQLAlchemy wants them."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        return url
    raise ValueError(f"unsupported ledger URL scheme: {url.split(':', 1)[0]}")


def upgrade(url: str, revision: str = "head") -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolates "%": escape it, or URL-encoded passwords break.
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    if url.startswith("sqlite:///"):
        command.upgrade(config, revision)  # SQLite serialises DDL with its write lock
        return
    # Several services may start against a fresh database at once: one migrates, the
    # others wait on this lock and then find nothing to do.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            command.upgrade(config, revision)
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
