"""PostgreSQL and SQLite: rows written by the adapter are read back by a separate connection."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import psycopg

from adapters.sql.checkpoints import checkpoint_store
from sagas.ports import Checkpoint
from services.settings import PlatformSettings


def test_postgres_row_is_visible_to_another_connection(stack_settings: PlatformSettings) -> None:
    chain = f"it-{uuid.uuid4().hex[:8]}"
    checkpoint_store(stack_settings.postgres_url).save(Checkpoint(chain, 99, "ab" * 32))
    with psycopg.connect(stack_settings.postgres_url) as conn:
        row = conn.execute(
            "select height, block_hash from chain_checkpoint where chain = %s", (chain,)
        ).fetchone()
        version = conn.execute("show server_version").fetchone()
    assert row == (99, "ab" * 32)
    assert version is not None and version[0].startswith("15.")


def test_sqlite_row_is_visible_to_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite3"
    checkpoint_store(f"sqlite:///{path}").save(Checkpoint("btc", 7, "cd" * 32))
    with sqlite3.connect(path) as conn:
        assert conn.execute("select height, block_hash from chain_checkpoint").fetchall() == [
            (7, "cd" * 32)
        ]
