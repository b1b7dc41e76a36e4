"""IntentStore contract (sagas.ports): the fake, SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.operations.intents import SqlIntentStore
from sagas.errors import IdempotencyConflict
from sagas.intents import Intent, sign_intent
from sagas.ports import IntentStore
from tests.fakes import FakeIntentStore


@pytest.fixture(params=["fake", "sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IntentStore]:
    if request.param == "fake":
        yield FakeIntentStore()
    elif request.param == "sqlite":
        yield SqlIntentStore(f"sqlite:///{tmp_path / 'intents.sqlite3'}")
    else:
        request.node.add_marker(pytest.mark.stack)
        yield SqlIntentStore(request.getfixturevalue("fresh_postgres_url"))


def intent(op_id: str, amount: int = 5) -> Intent:
    return Intent(
        kind="withdrawal",
        operation_id=op_id,
        client_id="acme",
        asset="ETH",
        amount=amount,
        destination="0x52908400098527886E0F7030069857D2E4169EE7",
        fee_cap=10**15,
        policy_version=1,
        expires_at=(datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0),
        payload={"requested_by": "acme-user"},
    )


def test_is_an_intent_store(store: IntentStore) -> None:
    assert isinstance(store, IntentStore)


def test_an_intent_is_stored_once_and_read_back_exactly(store: IntentStore) -> None:
    op = f"wd:acme:{uuid.uuid4().hex}"
    first = intent(op, 7 * 10**30)  # beyond a 64-bit integer: kept exactly
    assert store.put_intent(first, 2) is True
    assert store.put_intent(first, 2) is False
    got = store.intent(op)
    assert got is not None
    assert got[0].hash() == first.hash() and got[1] == 2
    assert store.intent(op, "fee_bump") is None
    assert store.intent("wd:acme:other") is None


def test_another_intent_for_the_operation_is_a_conflict(store: IntentStore) -> None:
    op = f"wd:acme:{uuid.uuid4().hex}"
    store.put_intent(intent(op, 5), 0)
    with pytest.raises(IdempotencyConflict):
        store.put_intent(intent(op, 6), 0)
    got = store.intent(op)
    assert got is not None and got[0].amount == 5


def test_approvals_are_kept_once_per_key(store: IntentStore) -> None:
    it = intent(f"wd:acme:{uuid.uuid4().hex}")
    store.put_intent(it, 2)
    alice, bob = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    a, b = sign_intent(it, alice), sign_intent(it, bob)
    assert store.add_approval(a, "alice") is True
    assert store.add_approval(a, "alice") is False
    assert store.add_approval(b, "bob") is True
    assert sorted(store.approvals(it.hash()), key=lambda x: x.key_id) == sorted(
        [a, b], key=lambda x: x.key_id
    )
    assert store.approvals("0" * 64) == []


def test_a_bad_approval_filed_first_does_not_hide_the_good_one(store: IntentStore) -> None:
    it = intent(f"wd:acme:{uuid.uuid4().hex}")
    store.put_intent(it, 2)
    bob = Ed25519PrivateKey.generate()
    good = sign_intent(it, bob)
    bad = good.model_copy(update={"signature": "A" * 86})  # bob's key id, no signature
    assert store.add_approval(bad, "bob") is True
    assert store.add_approval(good, "bob") is True
    assert good in store.approvals(it.hash())
