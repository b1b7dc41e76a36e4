"""The chain watcher against a scripted chain (SQLite, fakes): reorg shapes that a dev node
cannot easily produce."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.keys.store import SqlKeyStore
from adapters.sqldb import SqlDatabase
from sagas.chainwatch import BlockScan, RawDeposit
from sagas.keys import WalletRecord
from services.chainwatch.watcher import ChainWatcher

ALICE, CHANGE = "addr-alice", "addr-change"


class ScriptedChain:
    """Blocks are (hash, deposits); parents follow the list order; height = index."""

    chain = "bitcoin"

    def __init__(self) -> None:
        self.blocks: list[tuple[str, list[RawDeposit]]] = [("00" * 32, [])]  # genesis
        self.on_scan: Callable[[int], None] = lambda _h: None

    def head(self) -> int:
        return len(self.blocks) - 1

    def block_hash(self, height: int) -> str:
        return self.blocks[height][0]

    def scan(self, height: int, is_ours: Callable[[str], bool]) -> BlockScan:
        self.on_scan(height)
        block_hash, deposits = self.blocks[height]
        parent = self.blocks[height - 1][0] if height else ""
        return BlockScan(
            block_hash,
            parent,
            [d for d in deposits if is_ours(d.address)],
            [d.tx_hash for d in deposits],
        )


def _deposit(tx: str, address: str = ALICE) -> RawDeposit:
    return RawDeposit(tx, "vout0", address, "BTC", 1000)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[ChainWatcher, ScriptedChain, str]:
    url = f"sqlite:///{tmp_path / 'w.sqlite3'}"
    store = SqlKeyStore(url)
    store.save_wallet(
        WalletRecord(
            wallet_id="w",
            wrapped_seed="fake:v1:x",
            xpubs={"bitcoin": "x", "ethereum": "y"},
            btc_network="simnet",
            created_at=datetime.now(UTC),
        )
    )
    store.assign("w", "bitcoin", "alice:BTC", "alice", "BTC", lambda _i: ALICE)
    store.assign("w", "bitcoin", "w:change:op", None, "BTC", lambda _i: CHANGE, change=1)
    chain = ScriptedChain()
    return ChainWatcher(url, chain, store, confirmations=3, start_height=1), chain, url


def _events(url: str) -> list[tuple[str, str]]:
    with SqlDatabase(url).tx() as conn:
        rows = conn.all("select event_id, payload from ledger_outbox order by position")
    return [(r[0], json.loads(r[1])["type"]) for r in rows]


def test_a_block_that_leaves_and_comes_back_is_observed_anew(setup) -> None:  # type: ignore[no-untyped-def]
    watcher, chain, url = setup
    chain.blocks.append(("A", [_deposit("t1")]))
    watcher.run_until_caught_up()
    chain.blocks[1] = ("B", [])
    watcher.run_until_caught_up()
    assert [o.state for o in watcher.observations()] == ["reorged"]
    chain.blocks[1] = ("A", [_deposit("t1")])
    watcher.run_until_caught_up()
    (obs,) = watcher.observations()
    assert (obs.state, obs.revival) == ("seen", 1)
    seen = [e for e, t in _events(url) if t == "custody.chain.deposit_seen.v1"]
    assert len(seen) == 2 and seen[1].endswith("/seen#1")


def test_a_reorg_between_unwinding_and_scanning_is_caught(setup) -> None:  # type: ignore[no-untyped-def]
    watcher, chain, url = setup
    chain.blocks += [("A", [_deposit("t1")]), ("A2", [])]
    watcher.run_until_caught_up()
    chain.blocks.append(("A3", []))

    def reorg_under_our_feet(height: int) -> None:
        if height == 3 and chain.blocks[2][0] == "A2":
            chain.blocks[1:] = [("B", []), ("B2", []), ("B3", [])]

    chain.on_scan = reorg_under_our_feet
    watcher.run_until_caught_up()
    assert [o.state for o in watcher.observations()] == ["reorged"]
    with SqlDatabase(url).tx() as conn:
        stored = [r[0] for r in conn.all("select block_hash from chain_blocks order by height")]
    assert stored == ["B", "B2", "B3"]


def test_our_change_outputs_are_not_deposits(setup) -> None:  # type: ignore[no-untyped-def]
    watcher, chain, _ = setup
    chain.blocks.append(("A", [_deposit("t1", CHANGE), _deposit("t2", ALICE)]))
    watcher.run_until_caught_up()
    assert [o.tx_hash for o in watcher.observations()] == ["t2"]
