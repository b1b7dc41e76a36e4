"""KeyStore contract: adapters/keys/store.py SqlKeyStore on SQLite and PostgreSQL (the
port has no fake).

Checked: a wallet round-trips and the first one saved under an id wins; an account's
address is what `derive` gives at the next unused index, counted apart per wallet,
chain and change (external 0, internal 1); asking again gives the same assignment and
uses no index; an account with an address for another chain or asset is AccountConflict
and changes nothing; an address is never given to a second account; concurrent
requests get distinct indices and one address per account; lookup finds the account
behind an address, and nothing for a foreign one."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.keys.store import SqlKeyStore
from sagas.errors import AccountConflict
from sagas.keys import AddressAssignment, Chain, WalletRecord
from sagas.ports import KeyStore


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> KeyStore:
    if request.param == "sqlite":
        return SqlKeyStore(f"sqlite:///{tmp_path / 'keys.sqlite3'}")
    request.node.add_marker(pytest.mark.stack)
    return SqlKeyStore(request.getfixturevalue("fresh_postgres_url"))


def record(wallet_id: str | None = None, xpub: str = "xpub-a") -> WalletRecord:
    return WalletRecord(
        wallet_id=wallet_id or f"w-{uuid.uuid4().hex[:8]}",
        wrapped_seed=f"fake:v1:{uuid.uuid4().hex}",
        xpubs={"bitcoin": f"v{xpub}", "ethereum": xpub},
        btc_network="simnet",
        created_at=datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC),
    )


def path(wallet: str, chain: str, change: int = 0) -> Callable[[int], str]:
    """A stand-in for HD derivation: a distinct address per wallet, chain, change, index."""
    return lambda index: f"{chain[:3]}-{wallet}-{change}-{index}"


def give(
    store: KeyStore, wallet: str, account: str, chain: Chain = "bitcoin", change: int = 0
) -> AddressAssignment:
    asset = "BTC" if chain == "bitcoin" else "ETH"
    return store.assign(wallet, chain, account, "acme", asset, path(wallet, chain, change), change)


def test_is_the_port(store: KeyStore) -> None:
    assert isinstance(store, KeyStore)


def test_a_wallet_round_trips_and_the_first_saved_wins(store: KeyStore) -> None:
    first = record()
    assert store.wallet(first.wallet_id) is None
    assert store.save_wallet(first) == first
    assert store.wallet(first.wallet_id) == first
    second = record(first.wallet_id, xpub="xpub-b")
    assert store.save_wallet(second) == first
    assert store.wallet(first.wallet_id) == first


def test_an_address_is_derived_at_the_next_index_and_looked_up(store: KeyStore) -> None:
    w = store.save_wallet(record()).wallet_id
    alice = store.assign(w, "ethereum", "alice:ETH", None, "ETH", path(w, "ethereum"))
    assert alice == AddressAssignment(
        address=path(w, "ethereum")(0),
        account_id="alice:ETH",
        owner=None,
        chain="ethereum",
        asset="ETH",
        wallet_id=w,
        change=0,
        index=0,
    )
    bob = give(store, w, "bob:ETH", "ethereum")
    assert (bob.index, bob.address, bob.owner) == (1, path(w, "ethereum")(1), "acme")
    assert store.lookup(alice.address) == alice
    assert store.lookup(bob.address) == bob
    assert store.lookup("eth-nobody-0-0") is None


def test_asking_again_gives_the_same_address_and_uses_no_index(store: KeyStore) -> None:
    w = store.save_wallet(record()).wallet_id
    first = give(store, w, "alice:BTC")
    again = store.assign(w, "bitcoin", "alice:BTC", "acme", "BTC", lambda i: f"other-{i}")
    assert again == first
    assert give(store, w, "bob:BTC").index == 1


def test_indices_are_counted_per_wallet_chain_and_change(store: KeyStore) -> None:
    w, v = (store.save_wallet(record()).wallet_id for _ in range(2))
    got = [
        give(store, w, "a", "bitcoin").index,
        give(store, w, "b", "bitcoin").index,
        give(store, w, "c", "bitcoin", change=1).index,
        give(store, w, "d", "ethereum").index,
        give(store, v, "e", "bitcoin").index,
        give(store, w, "f", "bitcoin", change=1).index,
        give(store, w, "g", "bitcoin").index,
    ]
    assert got == [0, 1, 0, 0, 0, 1, 2]
    change = store.lookup(path(w, "bitcoin", 1)(1))
    assert change is not None and (change.account_id, change.change) == ("f", 1)


def test_another_chain_or_asset_for_the_account_is_a_conflict(store: KeyStore) -> None:
    w = store.save_wallet(record()).wallet_id
    btc = give(store, w, "alice:BTC")
    with pytest.raises(AccountConflict):
        give(store, w, "alice:BTC", "ethereum")
    with pytest.raises(AccountConflict):
        store.assign(w, "bitcoin", "alice:BTC", "acme", "LBTC", path(w, "bitcoin"))
    assert store.lookup(btc.address) == btc
    assert store.lookup(path(w, "ethereum")(0)) is None
    assert give(store, w, "bob:ETH", "ethereum").index == 0  # the refusals took no index


def test_an_address_is_never_given_to_a_second_account(store: KeyStore) -> None:
    w = store.save_wallet(record()).wallet_id
    alice = give(store, w, "alice:BTC")
    with pytest.raises(Exception):  # noqa: B017 - the port names no error for this
        store.assign(w, "bitcoin", "mallory:BTC", None, "BTC", lambda _i: alice.address)
    assert store.lookup(alice.address) == alice
    assert give(store, w, "mallory:BTC").index == 1


def test_concurrent_requests_get_distinct_indices(store: KeyStore) -> None:
    w = store.save_wallet(record()).wallet_id
    accounts = [f"c{n}:ETH" for n in range(10)] + ["same:ETH"] * 4
    got: list[AddressAssignment] = []
    start = threading.Barrier(len(accounts))

    def run(account: str) -> None:
        start.wait()
        got.append(give(store, w, account, "ethereum"))

    threads = [threading.Thread(target=run, args=(a,)) for a in accounts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    by_account = {a.account_id: a for a in got}
    assert len(got) == len(accounts) and len(by_account) == 11
    assert sorted(a.index for a in by_account.values()) == list(range(11))
    assert all(a == by_account[a.account_id] for a in got)  # "same" got one address
    assert all(store.lookup(a.address) == a for a in by_account.values())
