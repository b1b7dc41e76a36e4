"""A deposit that a reorg drops and a later block includes again, at another index, is
one deposit, credited once (anvil, the chain watcher, and the deposit saga's own
activities run per operation id as the router and Temporal would).

anvil_reorg [depth, [[raw tx, block offset], ...]] replaces the top blocks and puts
the same signed transactions back, here behind another transaction in the same
block: a new transactionIndex, and for a token transfer a new block-level logIndex
(its place in its receipt is unchanged)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from eth_account import Account

from adapters.chains.ethereum.faucet import DevChainFaucet
from adapters.chains.ethereum.reader import EthereumChainReader
from adapters.chains.ethereum.signer import InMemorySigner
from adapters.ledger.migrate import upgrade
from adapters.operations.observations import SqlDepositObservations
from adapters.operations.screening import DenyListScreening
from adapters.sqldb import SqlDatabase
from sagas import accounts
from sagas.deposit import DepositInput
from sagas.deposit.activities import DepositActivities
from services.chainwatch.watcher import ChainWatcher
from services.platform import Platform
from services.settings import PlatformSettings
from tests.reorgs import anvil_reorg

ETH = 10**18
DEPTH = 3
# Others mine on the shared anvil: a reorg reaches this many blocks below the one it
# must drop, so a block mined between reading the head and reorganising cannot save it.
MARGIN = 4


class World:
    def __init__(self, settings: PlatformSettings, url: str) -> None:
        upgrade(url)
        self.p = p = Platform(settings, url)
        p.open_books()
        p.create_wallet()
        self.node = p.eth
        self.faucet = DevChainFaucet(self.node.web3)
        self.token = settings.eth_token_address
        self.url = url
        self.client_id = f"c{uuid.uuid4().hex[:8]}"
        p.open_client_accounts(self.client_id)
        self.address = p.client_address(self.client_id, "ETH").address
        self.watcher = ChainWatcher(
            url,
            EthereumChainReader(self.node, {self.token: "CTUSD"}),
            p.keys,
            confirmations=DEPTH,
            start_height=self.node.block_number() + 1,
        )
        self.steps = DepositActivities(
            p.ledger, p.operations, SqlDepositObservations(url), DenyListScreening(p.eth, None)
        )

    def rpc(self, method: str, params: list[Any]) -> Any:
        answer = self.node.web3.provider.make_request(method, params)  # type: ignore[arg-type]
        assert "error" not in answer, answer
        return answer["result"]

    def payers(self, tokens: int = 0) -> tuple[InMemorySigner, InMemorySigner]:
        """Two funded keys, their funding buried below any reorg of this test."""
        keys = InMemorySigner.generate(), InMemorySigner.generate()
        for key in keys:
            self.faucet.fund_eth(key.address, ETH)
            if tokens:
                self.faucet.mint_token(self.token, key.address, tokens)
        self.mine(MARGIN + 1)
        return keys

    def signed(self, key: InMemorySigner, call: dict[str, Any]) -> bytes:
        """Signed, not sent: the same bytes can be sent, dropped by a reorg, and re-sent."""
        return key.sign_transaction(self.node.prepare(key.address, call, 0))

    def send(self, raw: bytes) -> tuple[int, str, int]:
        """Mined (anvil automines); its (block number, block hash, transaction index)."""
        receipt = self.node.wait_receipt(self.node.broadcast(raw), 30)
        return self.where(receipt.tx_hash)

    def where(self, tx_hash: str) -> tuple[int, str, int]:
        r = self.node.web3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        return int(r["blockNumber"]), "0x" + bytes(r["blockHash"]).hex(), int(r["transactionIndex"])

    def reorg_below(self, height: int, *raws: bytes) -> None:
        """Replace every block from a little below `height` up (as many as there are:
        others may have mined meanwhile); the new first block holds `raws`, in order."""
        depth = self.node.block_number() - height + 1 + MARGIN
        anvil_reorg(self.node.web3, depth, [(raw, 0) for raw in raws], keep=[self.token])

    def mine(self, n: int) -> None:
        for _ in range(n):
            self.rpc("evm_mine", [])

    def run_sagas(self) -> None:
        """Each deposit_seen starts (or wakes) the saga named by its operation id, as the
        router does; a saga runs to its end if the deposit is final or reorged."""
        inputs: dict[str, DepositInput] = {}
        for event in self.events():
            if event["type"] == "custody.chain.deposit_seen.v1":
                d = event["data"]
                dep = DepositInput(
                    chain=d["chain"],
                    tx_hash=d["tx_hash"],
                    position=d["position"],
                    address=d["address"],
                    account_id=d["account_id"],
                    asset=d["asset"],
                    amount=int(d["amount"]),
                )
                inputs[dep.operation_id] = dep
        for dep in inputs.values():
            self.steps.record_seen(dep)
            state = self.steps.observed_state(dep)
            if state == "final":
                self.steps.credit(dep, self.steps.screen(dep))
            elif state == "reorged":
                self.steps.cancel(dep)

    def events(self, topic: str = "custody.events.v1") -> list[dict[str, Any]]:
        with SqlDatabase(self.url).tx() as conn:
            rows = conn.all(
                "select payload from ledger_outbox where topic = ? order by position", (topic,)
            )
        return [json.loads(r[0]) for r in rows]

    def deposits(self) -> list[tuple[str, str]]:
        """(operation id, state) of every deposit operation."""
        with SqlDatabase(self.url).tx() as conn:
            rows = conn.all("select id, state from operations where kind = 'deposit' order by id")
        return [(r[0], r[1]) for r in rows]

    def balance(self, asset: str) -> int:
        return self.p.ledger.balance(accounts.client(self.client_id, asset)).total

    def observed(self) -> list[tuple[str, str]]:
        return sorted((o.position, o.state) for o in self.watcher.observations())


@pytest.fixture
def world(stack_settings: PlatformSettings, fresh_postgres_url: str) -> World:
    return World(stack_settings, fresh_postgres_url)


def test_eth_deposit_re_included_after_a_deep_reorg_is_credited_once(world: World) -> None:
    payer, other = world.payers()
    deposit = world.signed(payer, world.node.eth_transfer(world.address, ETH // 2))
    block, first_hash, index = world.send(deposit)
    assert index == 0
    world.mine(DEPTH)
    world.watcher.run_until_caught_up()
    world.run_sagas()
    assert world.balance("ETH") == ETH // 2

    # Deeper than the confirmation depth: the credited deposit is gone, then back,
    # behind another transaction of the same block.
    bystander = world.signed(other, world.node.eth_transfer(Account.create().address, 10**15))
    world.reorg_below(block, bystander, deposit)
    tx_hash = "0x" + bytes(world.node.web3.keccak(deposit)).hex()
    _, again, index = world.where(tx_hash)
    assert again != first_hash and index == 1
    world.mine(DEPTH)
    world.watcher.run_until_caught_up()
    world.run_sagas()

    assert world.balance("ETH") == ETH // 2  # once
    assert world.deposits() == [(f"deposit:ethereum:{tx_hash}:value", "credited")]
    assert world.observed() == [("value", "final"), ("value", "reorged")]
    (alert,) = world.events("custody.alerts.v1")
    assert alert["type"] == "custody.alert.final_deposit_reorged.v1"
    types = [e["type"] for e in world.events()]
    assert types.count("custody.deposit.credited.v1") == 1


def test_token_deposit_re_included_behind_other_logs_is_credited_once(world: World) -> None:
    payer, other = world.payers(tokens=5_000_000)
    deposit = world.signed(payer, world.node.token_transfer(world.token, world.address, 4_000_000))
    block, _, _ = world.send(deposit)
    world.mine(DEPTH)
    world.watcher.run_until_caught_up()
    world.run_sagas()
    assert world.balance("CTUSD") == 4_000_000

    bystander = world.signed(
        other, world.node.token_transfer(world.token, Account.create().address, 1_000)
    )
    world.reorg_below(block, bystander, deposit)
    tx_hash = "0x" + bytes(world.node.web3.keccak(deposit)).hex()
    receipt = world.node.web3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    assert int(receipt["logs"][0]["logIndex"]) == 1  # the bystander's Transfer log is 0
    world.mine(DEPTH)
    world.watcher.run_until_caught_up()
    world.run_sagas()

    assert world.balance("CTUSD") == 4_000_000  # once
    assert world.deposits() == [(f"deposit:ethereum:{tx_hash}:log0", "credited")]
    assert world.observed() == [("log0", "final"), ("log0", "reorged")]


def test_eth_deposit_reorged_before_finality_and_re_included_is_one_deposit(
    world: World,
) -> None:
    payer, other = world.payers()
    deposit = world.signed(payer, world.node.eth_transfer(world.address, ETH // 4))
    block, _, _ = world.send(deposit)
    world.watcher.run_until_caught_up()
    world.run_sagas()  # seen: waiting for finality (unless others mined blocks meanwhile)

    world.reorg_below(
        block,
        world.signed(other, world.node.eth_transfer(Account.create().address, 10**15)),
        deposit,
    )
    world.watcher.run_until_caught_up()
    world.run_sagas()  # the first observation reorged, the second seen: still waiting
    world.mine(DEPTH)
    world.watcher.run_until_caught_up()
    world.run_sagas()

    tx_hash = "0x" + bytes(world.node.web3.keccak(deposit)).hex()
    assert world.balance("ETH") == ETH // 4
    assert world.deposits() == [(f"deposit:ethereum:{tx_hash}:value", "credited")]
    assert world.observed() == [("value", "final"), ("value", "reorged")]
