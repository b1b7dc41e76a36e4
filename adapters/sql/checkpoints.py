"""CheckpointStore on SQLite and PostgreSQL: one row per chain, replaced atomically."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg

from sagas.ports import Checkpoint

_SCHEMA = """
create table if not exists chain_checkpoint (
    chain       text primary key,
    height      bigint not null check (height >= 0),
    block_hash  text not null,
    updated_at  timestamp not null default current_timestamp
)
"""

_UPSERT = """
insert into chain_checkpoint (chain, height, block_hash) values ({p}, {p}, {p})
on conflict (chain) do update
   set height = excluded.height, block_hash = excluded.block_hash,
       updated_at = current_timestamp
"""


class SqliteCheckpointStore:
    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        with self._connect() as conn:
            conn.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=30, isolation_level=None)
        conn.execute("pragma journal_mode=wal")
        return conn

    def save(self, checkpoint: Checkpoint) -> None:
        conn = self._connect()
        try:
            conn.execute(
                _UPSERT.format(p="?"), (checkpoint.chain, checkpoint.height, checkpoint.block_hash)
            )
        finally:
            conn.close()

    def load(self, chain: str) -> Checkpoint | None:
        conn = self._connect()
        try:
            row = conn.execute(
                "select chain, height, block_hash from chain_checkpoint where chain = ?", (chain,)
            ).fetchone()
        finally:
            conn.close()
        return Checkpoint(str(row[0]), int(row[1]), str(row[2])) if row else None


class PostgresCheckpointStore:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        with psycopg.connect(self._dsn, autocommit=True) as conn:
            conn.execute(_SCHEMA)

    def save(self, checkpoint: Checkpoint) -> None:
        with psycopg.connect(self._dsn) as conn:
            conn.execute(
                _UPSERT.format(p="%s"), (checkpoint.chain, checkpoint.height, checkpoint.block_hash)
            )

    def load(self, chain: str) -> Checkpoint | None:
        with psycopg.connect(self._dsn) as conn:
            row = conn.execute(
                "select chain, height, block_hash from chain_checkpoint where chain = %s", (chain,)
            ).fetchone()
        return Checkpoint(str(row[0]), int(row[1]), str(row[2])) if row else None


def checkpoint_store(url: str) -> SqliteCheckpointStore | PostgresCheckpointStore:
    """The store for a URL: sqlite:///<path> or postgresql://..."""
    if url.startswith("sqlite:///"):
        return SqliteCheckpointStore(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresCheckpointStore(url)
    raise ValueError(f"unsupported store URL scheme: {url.split(':', 1)[0]}")
