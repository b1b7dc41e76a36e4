"""PolicyStore contract: the fake, SQLite and PostgreSQL keep every version."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

from adapters.policy.store import SqlPolicyStore
from sagas.policy import PolicyRules
from sagas.ports import PolicyStore
from tests.fakes import FakePolicyStore


class PolicyStoreContract:
    @pytest.fixture
    def store(self) -> PolicyStore:
        raise NotImplementedError

    @pytest.fixture
    def client(self) -> str:
        return f"c-{uuid.uuid4().hex[:8]}"

    def test_is_a_policy_store(self, store: PolicyStore) -> None:
        assert isinstance(store, PolicyStore)

    def test_versions_accumulate_and_stay_readable(self, store: PolicyStore, client: str) -> None:
        assert store.current(client, "BTC") is None
        v1 = store.put(
            PolicyRules(client_id=client, asset="BTC", per_transaction_limit=10), "officer-1"
        )
        v2 = store.put(
            PolicyRules(
                client_id=client,
                asset="BTC",
                per_transaction_limit=20,
                allow_list_required=True,
                allowed_destinations=frozenset({"a", "b"}),
            ),
            "officer-2",
        )
        assert (v1.version, v2.version) == (1, 2)
        current = store.current(client, "BTC")
        assert current is not None and current.rules == v2.rules and current.version == 2
        old = store.version(client, "BTC", 1)
        assert old is not None and old.rules.per_transaction_limit == 10
        assert old.created_by == "officer-1"
        assert store.version(client, "BTC", 3) is None
        assert store.current(client, "ETH") is None

    def test_concurrent_changes_get_distinct_versions(
        self, store: PolicyStore, client: str
    ) -> None:
        start = threading.Barrier(6)
        versions: list[int] = []

        def put(n: int) -> None:
            start.wait()
            versions.append(
                store.put(
                    PolicyRules(client_id=client, asset="BTC", per_transaction_limit=n + 1), f"o{n}"
                ).version
            )

        threads = [threading.Thread(target=put, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(versions) == [1, 2, 3, 4, 5, 6]


class TestFakePolicyStore(PolicyStoreContract):
    @pytest.fixture
    def store(self) -> PolicyStore:
        return FakePolicyStore()


class TestSqlitePolicyStore(PolicyStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> PolicyStore:
        return SqlPolicyStore(f"sqlite:///{tmp_path / 'p.sqlite3'}")


@pytest.mark.stack
class TestPostgresPolicyStore(PolicyStoreContract):
    @pytest.fixture
    def store(self, fresh_postgres_url: str) -> PolicyStore:
        return SqlPolicyStore(fresh_postgres_url)
