"""The chain watcher on anvil: ETH and token deposits to client addresses are seen once,
final after the confirmation depth; a reorg before finality undoes them, one after
finality raises a critical alert."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from adapters.chains.ethereum.faucet import DevChainFaucet
from adapters.chains.ethereum.node import Web3EthereumNode
from adapters.chains.ethereum.reader import EthereumChainReader
from adapters.kafka.bus import KafkaEventBus
from adapters.keys.hd import BipDeriver
from adapters.keys.openbao import OpenBaoKeyWrapper
from adapters.keys.store import SqlKeyStore
from adapters.sqldb import SqlDatabase
from sagas.events import Envelope
from sagas.keys.wallets import create_wallet, deposit_address
from services.chainwatch.watcher import ChainWatcher
from services.settings import PlatformSettings

ETH = 10**18
DEPTH = 3


class World:
    def __init__(self, settings: PlatformSettings, url: str) -> None:
        self.node = Web3EthereumNode(settings.eth_rpc_url)
        self.faucet = DevChainFaucet(self.node.web3)
        self.token = settings.eth_token_address
        self.url = url
        store = SqlKeyStore(url)
        deriver = BipDeriver(settings.btc_network)
        wallet = create_wallet(
            f"w-{uuid.uuid4().hex[:8]}",
            deriver,
            OpenBaoKeyWrapper(
                settings.openbao_addr, *settings.approle("custody-worker"), settings.openbao_kek
            ),
            store,
        )
        self.eth = deposit_address(
            store, deriver, wallet.wallet_id, "ethereum", "alice:ETH", "alice", "ETH"
        ).address
        self.usd = deposit_address(
            store, deriver, wallet.wallet_id, "ethereum", "alice:CTUSD", "alice", "CTUSD"
        ).address
        reader = EthereumChainReader(self.node, {self.token: "CTUSD"})
        self.watcher = ChainWatcher(
            url, reader, store, confirmations=DEPTH, start_height=self.node.block_number() + 1
        )

    def rpc(self, method: str, params: list[Any]) -> Any:
        return self.node.web3.provider.make_request(method, params)  # type: ignore[arg-type]

    def mine(self, n: int) -> None:
        for _ in range(n):
            self.rpc("evm_mine", [])

    def events(self, topic: str = "custody.events.v1") -> list[dict[str, Any]]:
        with SqlDatabase(self.url).tx() as conn:
            rows = conn.all(
                "select payload from ledger_outbox where topic = ? order by position", (topic,)
            )
        return [json.loads(r[0]) for r in rows]

    def states(self) -> list[tuple[str, str, str]]:
        return [(o.asset, o.amount, o.state) for o in self.watcher.observations()]


@pytest.fixture
def world(stack_settings: PlatformSettings, fresh_postgres_url: str) -> World:
    return World(stack_settings, fresh_postgres_url)


def test_eth_and_token_deposits_are_seen_once_then_final(world: World) -> None:
    world.faucet.fund_eth(world.eth, 2 * ETH)  # block B
    world.faucet.mint_token(world.token, world.usd, 2_500_000)  # block B+1: 2.5 CTUSD
    world.watcher.run_until_caught_up()
    world.watcher.run_until_caught_up()  # watching again adds nothing
    assert sorted(world.states()) == [("CTUSD", "2500000", "seen"), ("ETH", str(2 * ETH), "seen")]
    world.faucet.fund_eth(world.node.web3.eth.accounts[3], ETH)  # B+2, not ours: ignored
    world.watcher.run_until_caught_up()
    assert sorted(world.states()) == [
        ("CTUSD", "2500000", "seen"),
        ("ETH", str(2 * ETH), "final"),
    ]  # B has 3 confirmations
    world.mine(1)
    world.watcher.run_until_caught_up()
    assert {s for _, _, s in world.states()} == {"final"}
    types = [e["type"] for e in world.events()]
    assert types.count("custody.chain.deposit_seen.v1") == 2
    assert types.count("custody.chain.deposit_final.v1") == 2
    seen = [e for e in world.events() if e["type"] == "custody.chain.deposit_seen.v1"]
    assert {e["subject"] for e in seen} == {world.eth, world.usd}
    assert {e["data"]["account_id"] for e in seen} == {"alice:ETH", "alice:CTUSD"}


def test_a_reorg_before_finality_undoes_the_deposit(world: World) -> None:
    world.faucet.fund_eth(world.eth, ETH)
    world.watcher.run_until_caught_up()
    assert world.states() == [("ETH", str(ETH), "seen")]
    world.rpc("anvil_reorg", [1, []])  # the deposit's block is replaced by an empty one
    world.mine(DEPTH + 2)
    world.watcher.run_until_caught_up()
    assert world.states() == [("ETH", str(ETH), "reorged")]
    types = [e["type"] for e in world.events()]
    assert "custody.chain.reorg.v1" in types
    assert types.count("custody.chain.deposit_reorged.v1") == 1
    assert "custody.chain.deposit_final.v1" not in types
    assert world.events("custody.alerts.v1") == []


def test_a_reorg_after_finality_is_a_critical_alert(world: World) -> None:
    world.faucet.fund_eth(world.eth, ETH)
    world.mine(DEPTH)
    world.watcher.run_until_caught_up()
    assert world.states() == [("ETH", str(ETH), "final")]
    world.rpc("anvil_reorg", [DEPTH + 1, []])
    world.watcher.run_until_caught_up()
    assert world.states() == [("ETH", str(ETH), "reorged")]
    (alert,) = world.events("custody.alerts.v1")
    assert alert["type"] == "custody.alert.final_deposit_reorged.v1"
    assert alert["data"]["address"] == world.eth


def test_a_watcher_killed_mid_block_reports_each_deposit_exactly_once_on_kafka(
    world: World, stack_settings: PlatformSettings, tmp_path: Path
) -> None:
    start = world.node.block_number() + 1
    world.faucet.fund_eth(world.eth, 3 * ETH)
    world.faucet.mint_token(world.token, world.usd, 7_000_000)
    paused = tmp_path / "in-block"
    watch = [
        sys.executable,
        "-m",
        "services.chainwatch.main",
        "--db-url",
        world.url,
        "--start-height",
        str(start),
        "--confirmations",
        str(DEPTH),
    ]
    victim = subprocess.Popen(
        [*watch, "--pause-in-block", str(paused)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not paused.exists():
        assert victim.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(10)
    assert world.watcher.observations() == []  # the block's work never committed

    world.mine(DEPTH)
    for _ in range(2):  # restart, and once more for good measure
        rerun = subprocess.run([*watch, "--until-caught-up"], capture_output=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
    relay = subprocess.run(
        [sys.executable, "-m", "services.relay.main", "--ledger-url", world.url, "--until-empty"],
        capture_output=True,
        timeout=120,
    )
    assert relay.returncode == 0, relay.stderr

    observations = world.watcher.observations()
    assert sorted((o.asset, o.state) for o in observations) == [
        ("CTUSD", "final"),
        ("ETH", "final"),
    ]
    bus = KafkaEventBus(stack_settings.kafka_client("admin"))
    ours: list[Envelope] = []
    group = f"it-watch-{uuid.uuid4().hex}"
    while batch := bus.read("custody.events.v1", group, max_events=10_000, timeout=10):
        ours += [e for e in batch if e.subject in (world.eth, world.usd)]
    ids = [e.id for e in ours]
    assert len(ids) == len(set(ids)) == 4  # seen + final, for each deposit, once
    assert {e.data["id"] for e in ours} == {o.id for o in observations}


def _until_mined(world: World, tx_hash: str, timeout: float = 30) -> None:
    """Anvil mines each arrival, not always before the sender's call returns (as
    test_evm_broadcaster.py's `mined` says): the watcher sees it once it is in a block."""
    deadline = time.monotonic() + timeout
    while world.node.receipt(tx_hash) is None:
        assert time.monotonic() < deadline, f"{tx_hash} was never mined"
        time.sleep(0.1)


def test_the_platforms_own_transactions_are_tracked_to_finality_and_through_reorgs(
    world: World,
) -> None:
    from adapters.chains.ethereum.broadcaster import EvmBroadcaster
    from adapters.chains.ethereum.signer import InMemorySigner

    hot = InMemorySigner.generate()
    world.faucet.fund_eth(hot.address, ETH)
    broadcaster = EvmBroadcaster(world.url, world.node)
    sent = broadcaster.send("payout-7", hot, world.node.eth_transfer(world.eth, 10**15))
    _until_mined(world, sent.tx_hash)
    world.watcher.run_until_caught_up()
    (mined,) = world.watcher.outgoing()
    assert (mined.operation_id, mined.tx_hash, mined.state) == ("payout-7", sent.tx_hash, "seen")
    world.mine(DEPTH)
    world.watcher.run_until_caught_up()
    assert [o.state for o in world.watcher.outgoing()] == ["final"]
    out_events = [e for e in world.events() if e["subject"] == "payout-7"]
    assert [e["type"] for e in out_events] == [
        "custody.chain.tx_mined.v1",
        "custody.chain.tx_final.v1",
    ]

    second = broadcaster.send("payout-8", hot, world.node.eth_transfer(world.eth, 10**15))
    _until_mined(world, second.tx_hash)
    world.watcher.run_until_caught_up()
    world.rpc("anvil_reorg", [1, []])
    world.watcher.run_until_caught_up()
    states = {(o.operation_id, o.state) for o in world.watcher.outgoing()}
    assert ("payout-8", "reorged") in states
    assert world.node.receipt(second.tx_hash) is None  # gone: the saga must act (issue 5)
