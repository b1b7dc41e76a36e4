"""Deposit observations (the chain watcher's view of one output, what the deposit saga
credits from) on SQLite and PostgreSQL, and their fake (tests/fakes_chains.py).

The SQL implementation reads what the real chain watcher (services/chainwatch) writes:
here it follows a scripted chain, so both cases see the same blocks. An output the
watcher never saw is unknown; seen until its block is deep enough, then final with what
the watcher recorded; reorged when its block leaves the chain (final or not); final
again once mined again in another block and buried there."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from adapters.ledger.migrate import upgrade
from adapters.operations.observations import SqlDepositObservations
from sagas.chainwatch import BlockScan, RawDeposit
from sagas.keys import AddressAssignment
from sagas.ports import DepositObservations
from services.chainwatch.watcher import ChainWatcher
from tests.fakes_chains import FakeDepositObservations, Output

DEPTH = 3


class Chains(Protocol):
    """The chains the watcher follows, as a test scripts them."""

    def mine(self, *outputs: Output, chain: str = "bitcoin") -> str: ...

    def bury(self, block: str, chain: str = "bitcoin") -> None: ...

    def drop(self, block: str, chain: str = "bitcoin") -> None: ...


class _ScriptedReader:
    """sagas.ports.ChainReader over a list of (block hash, deposits); height = index."""

    def __init__(self, chain: str) -> None:
        self.chain = chain
        genesis = ("0x" if chain == "ethereum" else "") + "00" * 32
        self.blocks: list[tuple[str, list[RawDeposit]]] = [(genesis, [])]

    def head(self) -> int:
        return len(self.blocks) - 1

    def block_hash(self, height: int) -> str:
        return self.blocks[height][0]

    def scan(self, height: int, is_ours: Callable[[str], bool]) -> BlockScan:
        block_hash, deposits = self.blocks[height]
        return BlockScan(
            block_hash,
            self.blocks[height - 1][0] if height else "",
            [d for d in deposits if is_ours(d.address)],
            [d.tx_hash for d in deposits],
        )


class _AddressBook:
    """The watcher's lookup of whose an address is (all that it asks of the key store)."""

    def __init__(self) -> None:
        self.assigned: dict[str, AddressAssignment] = {}

    def lookup(self, address: str) -> AddressAssignment | None:
        return self.assigned.get(address)


class WatchedChains:
    """Scripted chains followed by the real ChainWatcher, writing into the database."""

    def __init__(self, url: str) -> None:
        upgrade(url)  # as the watcher's process does when it starts
        self._url = url
        self._book = _AddressBook()
        self._readers: dict[str, _ScriptedReader] = {}
        self._watchers: dict[str, ChainWatcher] = {}

    def _follow(self, chain: str) -> tuple[_ScriptedReader, ChainWatcher]:
        if chain not in self._readers:
            self._readers[chain] = _ScriptedReader(chain)
            self._watchers[chain] = ChainWatcher(
                self._url,
                self._readers[chain],
                self._book,  # type: ignore[arg-type]
                DEPTH,
                start_height=1,
                migrate=False,
            )
        return self._readers[chain], self._watchers[chain]

    def _block(self, reader: _ScriptedReader, deposits: list[RawDeposit]) -> str:
        block = f"{reader.chain}-{uuid.uuid4().hex[:12]}"
        reader.blocks.append((block, deposits))
        return block

    def mine(self, *outputs: Output, chain: str = "bitcoin") -> str:
        reader, watcher = self._follow(chain)
        for o in outputs:
            self._book.assigned[o.address] = AddressAssignment(
                address=o.address,
                account_id=o.account_id,
                owner=None,
                chain=chain,  # type: ignore[arg-type]
                asset=o.asset,
                wallet_id="w",
                change=0,
                index=0,
            )
        raw = [RawDeposit(o.tx_hash, o.position, o.address, o.asset, o.amount) for o in outputs]
        block = self._block(reader, raw)
        watcher.run_until_caught_up()
        return block

    def _height(self, reader: _ScriptedReader, block: str) -> int:
        return [b for b, _ in reader.blocks].index(block)

    def bury(self, block: str, chain: str = "bitcoin") -> None:
        reader, watcher = self._follow(chain)
        while reader.head() - self._height(reader, block) + 1 < DEPTH:
            self._block(reader, [])
        watcher.run_until_caught_up()

    def drop(self, block: str, chain: str = "bitcoin") -> None:
        reader, watcher = self._follow(chain)
        height = self._height(reader, block)
        longer = len(reader.blocks) - height + 1
        del reader.blocks[height:]
        for _ in range(longer):
            self._block(reader, [])
        watcher.run_until_caught_up()


Subject = tuple[DepositObservations, Chains]


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Subject]:
    if request.param == "memory":
        fake = FakeDepositObservations(confirmations=DEPTH)
        yield fake, fake
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'watcher.sqlite3'}"
    else:
        request.node.add_marker(pytest.mark.stack)
        url = request.getfixturevalue("fresh_postgres_url")
    chains = WatchedChains(url)
    yield SqlDepositObservations(url), chains


def output(**changes: Any) -> Output:
    tag = uuid.uuid4().hex
    fields: dict[str, Any] = {
        "tx_hash": tag * 2,
        "position": "vout1",
        "address": f"sb1q{tag[:20]}",
        "account_id": f"client:c{tag[:6]}:BTC",
        "asset": "BTC",
        "amount": 150_000_000,
    }
    return Output(**{**fields, **changes})


def key(o: Output) -> tuple[str, str, str]:
    return o.chain, o.tx_hash, o.position


def test_is_the_port(subject: Subject) -> None:
    assert isinstance(subject[0], DepositObservations)


def test_an_output_the_watcher_never_saw_is_unknown(subject: Subject) -> None:
    observations, _ = subject
    o = output()
    assert observations.state(*key(o)) == "unknown"
    assert observations.final(*key(o)) is None


def test_an_output_is_final_once_its_block_is_deep_enough(subject: Subject) -> None:
    observations, chains = subject
    o = output()
    block = chains.mine(o)
    assert observations.state(*key(o)) == "seen"
    assert observations.final(*key(o)) is None
    chains.bury(block)
    assert observations.state(*key(o)) == "final"
    assert observations.final(*key(o)) == (o.address, o.account_id, "BTC", 150_000_000)
    # An output is its chain, transaction and position: its neighbours are not it.
    assert observations.state("bitcoin", o.tx_hash, "vout0") == "unknown"
    assert observations.state("ethereum", o.tx_hash, o.position) == "unknown"


def test_what_is_final_is_what_the_watcher_recorded(subject: Subject) -> None:
    """Amounts beyond 64 bits (wei) come back exact, as integers."""
    observations, chains = subject
    o = output(
        chain="ethereum",
        position="value",
        tx_hash="0x" + uuid.uuid4().hex * 2,
        address="0x" + uuid.uuid4().hex[:20] * 2,
        account_id="client:c-eth:ETH",
        asset="ETH",
        amount=123 * 10**18 + 7,
    )
    chains.bury(chains.mine(o, chain="ethereum"), chain="ethereum")
    assert observations.final(*key(o)) == (o.address, "client:c-eth:ETH", "ETH", 123 * 10**18 + 7)


def test_only_blocks_deep_enough_are_final(subject: Subject) -> None:
    observations, chains = subject
    deep, shallow = output(), output()
    block = chains.mine(deep)
    chains.mine(shallow)
    chains.bury(block)
    assert observations.state(*key(deep)) == "final"
    assert observations.state(*key(shallow)) == "seen"
    assert observations.final(*key(shallow)) is None


def test_a_reorg_before_finality_undoes_the_output(subject: Subject) -> None:
    observations, chains = subject
    o = output()
    chains.drop(chains.mine(o))
    assert observations.state(*key(o)) == "reorged"
    assert observations.final(*key(o)) is None


def test_mined_again_after_a_reorg_it_is_final_in_its_new_block(subject: Subject) -> None:
    observations, chains = subject
    o = output()
    chains.drop(chains.mine(o))
    again = chains.mine(o)  # the same transaction, in a block of the new branch
    assert observations.state(*key(o)) == "seen"  # one reorged, one waiting
    chains.bury(again)
    assert observations.state(*key(o)) == "final"  # one reorged, one final
    assert observations.final(*key(o)) == (o.address, o.account_id, "BTC", 150_000_000)


def test_a_final_output_whose_block_leaves_the_chain_is_final_no_more(subject: Subject) -> None:
    observations, chains = subject
    o = output()
    block = chains.mine(o)
    chains.bury(block)
    chains.drop(block)  # deeper than the confirmations: the watcher alerts on it
    assert observations.state(*key(o)) == "reorged"
    assert observations.final(*key(o)) is None
