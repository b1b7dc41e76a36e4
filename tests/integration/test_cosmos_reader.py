"""CosmosChainReader on the stack's simd: the deposits a block holds are exactly the
successful transfers of uatom to our addresses, to the uatom (two sends of one faucet
transaction, a multi-send's outputs), never a failed transaction's; the block is named
by lower-case hashes and lists its transactions as the chain names them. The chain
watcher on it records, finalises at depth 1 and, run again from an earlier height, adds
nothing; the screening names who paid."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cosmpy.crypto.keypairs import PrivateKey
from cosmpy.protos.cosmos.bank.v1beta1.bank_pb2 import Input, Output
from cosmpy.protos.cosmos.bank.v1beta1.tx_pb2 import MsgMultiSend
from cosmpy.protos.cosmos.base.v1beta1.coin_pb2 import Coin
from cosmpy.protos.cosmos.tx.v1beta1.tx_pb2 import TxBody
from google.protobuf.any_pb2 import Any as ProtoAny

from adapters.chains.cosmos.faucet import CosmosFaucet
from adapters.chains.cosmos.node import CosmosNode, CosmosTxResult
from adapters.chains.cosmos.reader import MULTI_SEND, CosmosChainReader
from adapters.chains.cosmos.tx import (
    UnsignedCosmosTx,
    address_of,
    assemble,
    build,
    msg_send,
    sign_doc,
    tx_hash,
)
from adapters.keys.hd import BipDeriver
from adapters.keys.openbao import OpenBaoKeyWrapper
from adapters.keys.store import SqlKeyStore
from adapters.operations.screening import DenyListScreening
from adapters.sqldb import SqlDatabase
from sagas.chainwatch import RawDeposit
from sagas.errors import DependencyUnavailable
from sagas.keys.wallets import create_wallet, deposit_address
from services.chainwatch.watcher import ChainWatcher
from services.settings import PlatformSettings

DENOM = "uatom"
FEE, GAS = 2_000, 300_000
HEX64 = "0123456789abcdef"

pytestmark = pytest.mark.timeout(120)


class Key:
    """A test-chain key standing in for a payer outside the platform."""

    def __init__(self) -> None:
        self._private = PrivateKey()
        self.public_key: bytes = self._private.public_key.public_key_bytes
        self.address = address_of(self.public_key)

    def send(self, node: CosmosNode, body: TxBody | None, sends: list[Any]) -> CosmosTxResult:
        """Sign and broadcast `sends` (or `body`'s messages instead, under the same fee and
        signer); the result once in a block, whether it succeeded or not."""
        account = node.account(self.address)
        assert account is not None, f"{self.address} has no account"
        number, sequence = account
        u = build(sends, self.public_key, sequence, number, "custody-pos-1", FEE, DENOM, GAS)
        if body is not None:
            u = UnsignedCosmosTx(
                body_bytes_hex=body.SerializeToString().hex(),
                auth_info_bytes_hex=u.auth_info_bytes_hex,
                chain_id=u.chain_id,
                account_number=u.account_number,
            )
        signature = self._private.sign(sign_doc(u), deterministic=True, canonicalise=True)
        raw = assemble(u, signature)
        assert node.broadcast(raw) == tx_hash(raw)
        return node.wait_tx(tx_hash(raw), 20)


@pytest.fixture(scope="module")
def node(stack_settings: PlatformSettings) -> Iterator[CosmosNode]:
    cosmos = CosmosNode(stack_settings.cosmos_grpc_url, denom=DENOM)
    yield cosmos
    cosmos.close()


@pytest.fixture(scope="module")
def faucet(node: CosmosNode, stack_settings: PlatformSettings) -> CosmosFaucet:
    if stack_settings.cosmos_faucet is None:
        pytest.fail("CUSTODY_COSMOS_FAUCET is not set: run `custody stack up`")
    return CosmosFaucet(node, stack_settings.cosmos_faucet)


@pytest.fixture(scope="module")
def reader(stack_settings: PlatformSettings) -> Iterator[CosmosChainReader]:
    cosmos = CosmosChainReader(stack_settings.cosmos_grpc_url, stack_settings.cosmos_denom)
    yield cosmos
    cosmos.close()


@pytest.fixture
def payer(node: CosmosNode, faucet: CosmosFaucet) -> Key:
    """A fresh key outside the platform holding 1 ATOM."""
    key = Key()
    faucet.fund((key.address, 1_000_000))
    return key


def _fresh() -> str:
    return Key().address


def _is_hex(value: str) -> bool:
    return len(value) == 64 and set(value) <= set(HEX64)


def test_two_sends_of_one_faucet_transaction_are_exactly_those_deposits(
    reader: CosmosChainReader, faucet: CosmosFaucet
) -> None:
    a, b, stranger = _fresh(), _fresh(), _fresh()
    funded = faucet.fund((a, 1_234_567), (b, 7_654_321))
    asked: list[str] = []

    def ours(address: str) -> bool:
        asked.append(address)
        return address in (a, b)

    scan = reader.scan(funded.height, ours)
    assert scan.deposits == [
        RawDeposit(funded.tx_hash, "msg0", a, "ATOM", 1_234_567),
        RawDeposit(funded.tx_hash, "msg1", b, "ATOM", 7_654_321),
    ]
    assert a in asked and b in asked
    assert reader.scan(funded.height, lambda x: x == b).deposits == [
        RawDeposit(funded.tx_hash, "msg1", b, "ATOM", 7_654_321)
    ]
    assert reader.scan(funded.height, lambda x: x == stranger).deposits == []
    # The transaction is listed as the chain names it (what CosmosNode.broadcast returns).
    assert funded.tx_hash in scan.txids and funded.tx_hash == funded.tx_hash.upper()
    assert all(t == t.upper() and len(t) == 64 for t in scan.txids)
    # The block by its hash, its parent by the hash at the height below, lower-case hex.
    assert scan.block_hash == reader.block_hash(funded.height) and _is_hex(scan.block_hash)
    assert scan.parent_hash == reader.block_hash(funded.height - 1) != scan.block_hash
    assert _is_hex(reader.block_hash(1)) and reader.head() >= funded.height


def test_a_failed_transaction_is_no_deposit(
    reader: CosmosChainReader, node: CosmosNode, payer: Key
) -> None:
    ours = _fresh()
    # More than the payer holds: CheckTx runs no messages, so the block holds the
    # transaction, failed (insufficient funds), its fee taken.
    failed = payer.send(node, None, [msg_send(payer.address, ours, 5_000_000, DENOM)])
    assert not failed.succeeded and failed.code != 0
    assert node.balance(ours) == 0
    scan = reader.scan(failed.height, lambda x: x == ours)
    assert scan.deposits == [] and failed.tx_hash in scan.txids
    # The same payer's next send, within its means, is one.
    paid = payer.send(node, None, [msg_send(payer.address, ours, 300_000, DENOM)])
    assert paid.succeeded
    assert reader.scan(paid.height, lambda x: x == ours).deposits == [
        RawDeposit(paid.tx_hash, "msg0", ours, "ATOM", 300_000)
    ]


def test_a_multi_send_pays_each_of_our_outputs(
    reader: CosmosChainReader, node: CosmosNode, payer: Key
) -> None:
    ours, theirs = _fresh(), _fresh()
    outputs = [(ours, 100_000), (theirs, 50_000), (ours, 25_000)]
    multi = MsgMultiSend(
        inputs=[Input(address=payer.address, coins=[Coin(denom=DENOM, amount="175000")])],
        outputs=[Output(address=a, coins=[Coin(denom=DENOM, amount=str(n))]) for a, n in outputs],
    )
    body = TxBody(messages=[ProtoAny(type_url=MULTI_SEND, value=multi.SerializeToString())])
    sent = payer.send(node, body, [msg_send(payer.address, ours, 1, DENOM)])
    assert sent.succeeded, sent.raw_log
    assert node.balance(ours) == 125_000
    assert reader.scan(sent.height, lambda x: x == ours).deposits == [
        RawDeposit(sent.tx_hash, "msg0.out0", ours, "ATOM", 100_000),
        RawDeposit(sent.tx_hash, "msg0.out2", ours, "ATOM", 25_000),
    ]
    # Screening names the multi-send's input (its transfer events name no sender).
    screening = DenyListScreening(None, None, cosmos=node)
    assert payer.address in screening.sources("cosmos", sent.tx_hash)


def test_screening_names_the_payer_and_refuses_a_denied_one(
    node: CosmosNode, faucet: CosmosFaucet
) -> None:
    funded = faucet.fund((_fresh(), 10_000))
    sources = DenyListScreening(None, None, cosmos=node).sources("cosmos", funded.tx_hash)
    assert sources == [faucet.address]
    denied = DenyListScreening(None, None, deny=[faucet.address], cosmos=node)
    reason = denied.check("cosmos", denied.sources("cosmos", funded.tx_hash))
    assert reason is not None and faucet.address in reason
    # A worker whose screening has no Cosmos node credits nothing unscreened: it waits.
    with pytest.raises(DependencyUnavailable):
        DenyListScreening(None, None).sources("cosmos", funded.tx_hash)


def test_the_watcher_records_final_atom_deposits_once(
    stack_settings: PlatformSettings,
    fresh_postgres_url: str,
    faucet: CosmosFaucet,
    reader: CosmosChainReader,
) -> None:
    s, url = stack_settings, fresh_postgres_url
    store = SqlKeyStore(url)
    deriver = BipDeriver(s.btc_network, s.cosmos_address_prefix)
    wrapper = OpenBaoKeyWrapper(s.openbao_addr, *s.approle("custody-worker"), s.openbao_kek)
    wallet = create_wallet(f"w-{uuid.uuid4().hex[:8]}", deriver, wrapper, store)
    alice = deposit_address(
        store, deriver, wallet.wallet_id, "cosmos", "client:alice:ATOM", "alice", "ATOM"
    ).address
    assert alice.startswith("cosmos1")
    funded = faucet.fund((alice, 2_500_001), (_fresh(), 1_000))
    watcher = ChainWatcher(url, reader, store, confirmations=1, start_height=funded.height)
    watcher.run_until_caught_up()
    watcher.run_until_caught_up()
    observed = [
        (o.address, o.account_id, o.asset, o.amount, o.state) for o in watcher.observations()
    ]
    assert observed == [(alice, "client:alice:ATOM", "ATOM", "2500001", "final")]
    assert watcher.observations()[0].position == "msg0"
    assert watcher.outgoing() == []  # Cosmos has no outgoing table (yet): nothing, no error

    def events() -> list[str]:
        with SqlDatabase(url).tx() as conn:
            rows = conn.all("select payload from ledger_outbox order by position", ())
        return [json.loads(r[0])["type"] for r in rows]

    assert events() == ["custody.chain.deposit_seen.v1", "custody.chain.deposit_final.v1"]
    # Started again from an earlier height (its position forgotten), it reads the same
    # block again and adds nothing.
    with SqlDatabase(url).tx(write=True) as conn:
        conn.run("delete from chain_blocks where chain = 'cosmos'")
    again = ChainWatcher(url, reader, store, confirmations=1, start_height=funded.height - 2)
    again.run_until_caught_up()
    with SqlDatabase(url).tx() as conn:
        heights = [int(r[0]) for r in conn.all("select height from chain_blocks", ())]
    assert min(heights) == funded.height - 2 and max(heights) >= funded.height
    assert len(again.observations()) == 1
    assert events() == ["custody.chain.deposit_seen.v1", "custody.chain.deposit_final.v1"]
