"""CheckpointStore contract: one suite, run against the fake, SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from adapters.sql.checkpoints import (
    PostgresCheckpointStore,
    SqliteCheckpointStore,
    checkpoint_store,
)
from sagas.ports import Checkpoint, CheckpointStore
from services.settings import PlatformSettings
from tests.fakes import FakeCheckpointStore


class CheckpointStoreContract:
    @pytest.fixture
    def store(self) -> CheckpointStore:
        raise NotImplementedError

    @pytest.fixture
    def chain(self) -> str:
        return f"chain-{uuid.uuid4().hex[:8]}"

    def test_is_a_checkpoint_store(self, store: CheckpointStore) -> None:
        assert isinstance(store, CheckpointStore)

    def test_unknown_chain_has_no_checkpoint(self, store: CheckpointStore, chain: str) -> None:
        assert store.load(chain) is None

    def test_round_trip(self, store: CheckpointStore, chain: str) -> None:
        cp = Checkpoint(chain, 812_345, "00" * 32)
        store.save(cp)
        assert store.load(chain) == cp

    def test_save_replaces_and_chains_are_separate(
        self, store: CheckpointStore, chain: str
    ) -> None:
        other = chain + "-other"
        store.save(Checkpoint(chain, 1, "aa" * 32))
        store.save(Checkpoint(other, 7, "cc" * 32))
        store.save(Checkpoint(chain, 2, "bb" * 32))
        assert store.load(chain) == Checkpoint(chain, 2, "bb" * 32)
        assert store.load(other) == Checkpoint(other, 7, "cc" * 32)

    def test_large_heights_keep_every_digit(self, store: CheckpointStore, chain: str) -> None:
        cp = Checkpoint(chain, 2**53 + 1, "ff" * 32)  # past float precision
        store.save(cp)
        assert store.load(chain) == cp

    def test_negative_height_is_refused(self, store: CheckpointStore, chain: str) -> None:
        with pytest.raises(Exception):  # noqa: B017 - each backend raises its own error type
            store.save(Checkpoint(chain, -1, "00" * 32))
        assert store.load(chain) is None


class TestFakeCheckpointStore(CheckpointStoreContract):
    @pytest.fixture
    def store(self) -> CheckpointStore:
        return FakeCheckpointStore()


class TestSqliteCheckpointStore(CheckpointStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> CheckpointStore:
        return SqliteCheckpointStore(tmp_path / "cp.sqlite3")

    def test_survives_reopening(self, tmp_path: Path, chain: str) -> None:
        SqliteCheckpointStore(tmp_path / "cp.sqlite3").save(Checkpoint(chain, 5, "ab" * 32))
        store = checkpoint_store(f"sqlite:///{tmp_path / 'cp.sqlite3'}")
        assert store.load(chain) == Checkpoint(chain, 5, "ab" * 32)


@pytest.mark.stack
class TestPostgresCheckpointStore(CheckpointStoreContract):
    @pytest.fixture
    def store(self, stack_settings: PlatformSettings) -> CheckpointStore:
        return PostgresCheckpointStore(stack_settings.postgres_url)


def test_unknown_url_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="mysql"):
        checkpoint_store("mysql://x")
