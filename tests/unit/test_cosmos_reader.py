"""The Cosmos reader's reading of a transaction's bytes (sends of several coins, multi-sends,
other messages, upper-case recipients, bytes that are no transaction), and the chain
watcher on a chain with no outgoing table (SQLite, a scripted Cosmos chain): deposits
recorded and final at depth 1, no outgoing confirmations, no error. The pieces that
start a watcher per chain name Cosmos."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cosmpy.protos.cosmos.bank.v1beta1.bank_pb2 import Input, Output
from cosmpy.protos.cosmos.bank.v1beta1.tx_pb2 import MsgMultiSend, MsgSend
from cosmpy.protos.cosmos.base.v1beta1.coin_pb2 import Coin
from cosmpy.protos.cosmos.staking.v1beta1.tx_pb2 import MsgDelegate
from cosmpy.protos.cosmos.tx.v1beta1.tx_pb2 import TxBody, TxRaw
from google.protobuf.any_pb2 import Any as ProtoAny
from google.protobuf.message import Message

from adapters.chains.cosmos.reader import transfers
from adapters.chains.cosmos.tx import address_of, tx_hash
from adapters.keys.store import SqlKeyStore
from adapters.sqldb import SqlDatabase
from sagas.chainwatch import BlockScan, RawDeposit
from sagas.keys import WalletRecord
from services import runner
from services.chainwatch.main import READERS
from services.chainwatch.watcher import ChainWatcher
from services.settings import PlatformSettings

OURS = address_of(bytes([2]) + bytes(range(32)))
THEIRS = address_of(bytes([3]) + bytes(range(32)))


def _any(msg: Message) -> ProtoAny:
    return ProtoAny(type_url="/" + msg.DESCRIPTOR.full_name, value=msg.SerializeToString())


def _tx(*messages: Message) -> tuple[str, bytes]:
    body = TxBody(messages=[_any(m) for m in messages]).SerializeToString()
    raw = TxRaw(body_bytes=body, auth_info_bytes=b"", signatures=[bytes(64)]).SerializeToString()
    return tx_hash(raw), raw


def _coins(*pairs: tuple[int, str]) -> list[Coin]:
    return [Coin(denom=d, amount=str(n)) for n, d in pairs]


def _read(raw: bytes, txid: str = "TX") -> list[RawDeposit]:
    return list(transfers(txid, raw, "uatom", "ATOM", lambda a: a == OURS))


def test_a_send_of_several_coins_counts_its_uatom_only() -> None:
    txid, raw = _tx(
        MsgSend(
            from_address=THEIRS,
            to_address=OURS,
            amount=_coins((5, "ibc/27394FB092D2ECCD"), (1_500_000, "uatom"), (7, "zeta")),
        )
    )
    assert _read(raw, txid) == [RawDeposit(txid, "msg0", OURS, "ATOM", 1_500_000)]
    _, other_denom = _tx(MsgSend(from_address=THEIRS, to_address=OURS, amount=_coins((9, "zz"))))
    assert _read(other_denom) == []


def test_each_message_and_each_multi_send_output_has_its_own_position() -> None:
    txid, raw = _tx(
        MsgDelegate(delegator_address=OURS, validator_address="cosmosvaloper1x"),
        MsgSend(from_address=THEIRS, to_address=THEIRS, amount=_coins((3, "uatom"))),
        MsgMultiSend(
            inputs=[Input(address=THEIRS, coins=_coins((60, "uatom")))],
            outputs=[
                Output(address=OURS, coins=_coins((10, "uatom"))),
                Output(address=THEIRS, coins=_coins((20, "uatom"))),
                Output(address=OURS, coins=_coins((30, "uatom"), (4, "zeta"))),
            ],
        ),
        MsgSend(from_address=THEIRS, to_address=OURS, amount=_coins((40, "uatom"))),
    )
    assert _read(raw, txid) == [
        RawDeposit(txid, "msg2.out0", OURS, "ATOM", 10),
        RawDeposit(txid, "msg2.out2", OURS, "ATOM", 30),
        RawDeposit(txid, "msg3", OURS, "ATOM", 40),
    ]


def test_an_upper_case_recipient_is_our_lower_case_address() -> None:
    _, raw = _tx(MsgSend(from_address=THEIRS, to_address=OURS.upper(), amount=_coins((8, "uatom"))))
    assert [(d.address, d.amount) for d in _read(raw)] == [(OURS, 8)]
    mixed = OURS[:10] + OURS[10:].upper()
    _, raw = _tx(MsgSend(from_address=THEIRS, to_address=mixed, amount=_coins((8, "uatom"))))
    assert _read(raw) == []  # not bech32 at all: the chain refuses it


def test_bytes_that_are_no_transaction_pay_nobody() -> None:
    assert _read(b"\xff\xff\xff") == []
    broken = TxRaw(body_bytes=b"\x0a\x05\x0a\x03abc").SerializeToString()
    assert _read(broken) == []
    truncated = ProtoAny(type_url="/cosmos.bank.v1beta1.MsgSend", value=b"\x0a\xff")
    raw = TxRaw(body_bytes=TxBody(messages=[truncated]).SerializeToString()).SerializeToString()
    assert _read(raw) == []


class ScriptedCosmos:
    """A Cosmos chain as the watcher sees it: blocks are (hash, deposits, txids)."""

    chain = "cosmos"

    def __init__(self) -> None:
        self.blocks: list[tuple[str, list[RawDeposit], list[str]]] = [("00" * 32, [], [])]

    def head(self) -> int:
        return len(self.blocks) - 1

    def block_hash(self, height: int) -> str:
        return self.blocks[height][0]

    def scan(self, height: int, is_ours: Callable[[str], bool]) -> BlockScan:
        block_hash, deposits, txids = self.blocks[height]
        parent = self.blocks[height - 1][0] if height else ""
        return BlockScan(block_hash, parent, [d for d in deposits if is_ours(d.address)], txids)


def test_the_watcher_follows_a_chain_with_no_outgoing_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.sqlite3'}"
    store = SqlKeyStore(url)
    xpubs = {"bitcoin": "x", "ethereum": "y", "cosmos": "z"}
    wallet = WalletRecord(
        wallet_id="w",
        wrapped_seed="fake:v1:x",
        xpubs=xpubs,  # type: ignore[arg-type]
        btc_network="simnet",
        created_at=datetime.now(UTC),
    )
    store.save_wallet(wallet)
    store.assign("w", "cosmos", "client:alice:ATOM", "alice", "ATOM", lambda _i: OURS)
    chain = ScriptedCosmos()
    deposit = RawDeposit("AB" * 32, "msg0", OURS, "ATOM", 1_234_567)
    chain.blocks.append(("a1" * 32, [deposit], ["AB" * 32, "CD" * 32]))
    watcher = ChainWatcher(url, chain, store, confirmations=1, start_height=1)
    assert watcher.step() == 1
    assert [(o.tx_hash, o.position, o.amount, o.state) for o in watcher.observations()] == [
        ("AB" * 32, "msg0", "1234567", "final")  # depth 1: final in its own block
    ]
    assert watcher.outgoing() == []
    chain.blocks.append(("a2" * 32, [], ["EF" * 32]))
    assert watcher.step() == 1
    with SqlDatabase(url).tx() as conn:
        rows = conn.all("select payload from ledger_outbox order by position")
    assert [json.loads(r[0])["type"] for r in rows] == [
        "custody.chain.deposit_seen.v1",
        "custody.chain.deposit_final.v1",
    ]


def test_a_cosmos_watcher_is_started_with_the_others() -> None:
    settings = PlatformSettings(cosmos_confirmations=4)
    reader, depth = READERS["cosmos"](settings)
    assert reader.chain == "cosmos" and depth == 4
    assert "cosmos" in runner.WATCHED
    assert runner.KAFKA_PRINCIPALS["watch-cosmos"] == "chainwatch"
    assert "watch-cosmos" in runner.BACKGROUND
