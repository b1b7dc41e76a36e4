"""NonceStore contract (sagas.intents): one suite for the fake, SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.ledger.migrate import upgrade
from adapters.operations.nonces import SqlNonceStore
from sagas.intents import NonceStore
from tests.fakes import FakeNonceStore

LATER = datetime.now(UTC) + timedelta(hours=1)


class NonceStoreContract:
    @pytest.fixture
    def store(self) -> NonceStore:
        raise NotImplementedError

    @pytest.fixture
    def key(self) -> str:
        return uuid.uuid4().hex

    def test_is_a_nonce_store(self, store: NonceStore) -> None:
        assert isinstance(store, NonceStore)

    def test_a_nonce_is_claimed_once(self, store: NonceStore, key: str) -> None:
        assert store.claim(key, "n" * 16, LATER) is True
        assert store.claim(key, "n" * 16, LATER) is False

    def test_nonces_are_per_key(self, store: NonceStore, key: str) -> None:
        other = uuid.uuid4().hex
        assert store.claim(key, "m" * 16, LATER)
        assert store.claim(other, "m" * 16, LATER)
        assert store.claim(key, "p" * 16, LATER)

    def test_of_concurrent_claims_exactly_one_wins(self, store: NonceStore, key: str) -> None:
        results: list[bool] = []
        barrier = threading.Barrier(8)

        def claim() -> None:
            barrier.wait()
            results.append(store.claim(key, "c" * 16, LATER))

        threads = [threading.Thread(target=claim) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [False] * 7 + [True]


class TestFakeNonceStore(NonceStoreContract):
    @pytest.fixture
    def store(self) -> NonceStore:
        return FakeNonceStore()


class TestSqliteNonceStore(NonceStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> NonceStore:
        url = f"sqlite:///{tmp_path / 'nonces.sqlite3'}"
        upgrade(url)
        return SqlNonceStore(url)


@pytest.mark.stack
class TestPostgresNonceStore(NonceStoreContract):
    @pytest.fixture
    def store(self, fresh_postgres_url: str) -> NonceStore:
        upgrade(fresh_postgres_url)
        return SqlNonceStore(fresh_postgres_url)
