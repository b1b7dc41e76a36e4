"""ChainReader for the Cosmos chain: bank transfers of the staking denom to our addresses.

A deposit is a `MsgSend` or an output of a `MsgMultiSend`, a top-level message of a
transaction that succeeded (ABCI code 0; a failed one is in its block too, with only its
fee taken), paying the denom to an address is_ours knows. Its position names it within
its transaction: `msg<i>` for the i-th message's send, `msg<i>.out<j>` for the j-th
output of a multi-send (one address may be paid twice in one); only the denom's coin of
a send of several coins counts. Nothing else moves coins to our addresses as a deposit:
staking rewards (a claim's, and the ones a delegate or undelegate withdraws on the way)
and completed unbondings land in a client's address as well, but they are the staking
saga's to book, not deposits; a send wrapped in another message (authz `MsgExec`) or
a vesting account's creation is not read (funds arrive unbooked, never twice).

Blocks, their hashes and their transactions' bytes come from the node's gRPC
(`GetBlockByHeight`); a transaction's result only for one that pays us, from the node's
transaction index (`GetTx`), waited for a moment since the index follows the block.
Transaction ids are the chain's own: the uppercase hex sha256 of the transaction's bytes
(`tx.tx_hash`, what `CosmosNode.broadcast` returns). Block hashes are lower-case hex.
Tendermint blocks are final once committed, so there are no reorgs to undo; the watcher's
reorg check still runs and finds none.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlparse

import bech32
import grpc
from cosmpy.protos.cosmos.bank.v1beta1.tx_pb2 import MsgMultiSend, MsgSend
from cosmpy.protos.cosmos.base.tendermint.v1beta1.query_pb2 import GetBlockByHeightRequest
from cosmpy.protos.cosmos.base.tendermint.v1beta1.query_pb2_grpc import (
    ServiceStub as TendermintStub,
)
from cosmpy.protos.cosmos.base.v1beta1.coin_pb2 import Coin
from cosmpy.protos.cosmos.tx.v1beta1.tx_pb2 import TxBody, TxRaw
from google.protobuf.message import DecodeError

from adapters.chains.cosmos.node import CosmosNode, QueryRefused
from adapters.chains.cosmos.tx import SEND, tx_hash
from sagas.chainwatch import BlockScan, RawDeposit
from sagas.errors import DependencyUnavailable

MULTI_SEND = "/cosmos.bank.v1beta1.MsgMultiSend"
_DIGITS = re.compile(r"[0-9]+")
_TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
# SDK 0.46's words for a height the node does not have yet (a node behind the one that
# named the head): it will, so the caller retries.
_NOT_YET = "bigger then the chain length"


class CosmosChainReader:
    chain = "cosmos"

    def __init__(
        self,
        grpc_url: str,
        denom: str = "uatom",
        asset: str = "ATOM",
        timeout: float = 10.0,
        index_wait: float = 10.0,
    ) -> None:
        """`grpc_url` as CosmosNode takes it; `asset`: the denom's asset code (the
        platform's ATOM); `index_wait`: seconds to wait for the node to index a
        transaction of a block it already serves. No I/O here."""
        self._node = CosmosNode(grpc_url, denom=denom, timeout=timeout)
        url = urlparse(grpc_url)
        target = f"{url.hostname}:{url.port}"
        self._channel = (
            grpc.secure_channel(target, grpc.ssl_channel_credentials())
            if url.scheme == "grpc+https"
            else grpc.insecure_channel(target)
        )
        self._tendermint = TendermintStub(self._channel)
        self._denom, self._asset = denom, asset
        self._timeout, self._index_wait = timeout, index_wait

    def __repr__(self) -> str:
        return f"CosmosChainReader({self._denom})"

    def close(self) -> None:
        self._channel.close()
        self._node.close()

    def head(self) -> int:
        """The latest committed height. DependencyUnavailable (transient)."""
        return self._node.height()

    def block_hash(self, height: int) -> str:
        """The block's hash, lower-case hex (heights start at 1)."""
        return bytes(self._block(height).block_id.hash).hex()

    def scan(self, height: int, is_ours: Callable[[str], bool]) -> BlockScan:
        """The block's transfers of the denom to our addresses in transactions that
        succeeded, and the ids of all its transactions (uppercase hex, the chain's)."""
        reply = self._block(height)
        raws = [bytes(raw) for raw in reply.block.data.txs]
        txids = [tx_hash(raw) for raw in raws]
        found: list[RawDeposit] = []
        for txid, raw in zip(txids, raws, strict=True):
            paying = list(transfers(txid, raw, self._denom, self._asset, is_ours))
            if paying and self._succeeded(txid, height):
                found.extend(paying)
        return BlockScan(
            block_hash=bytes(reply.block_id.hash).hex(),
            parent_hash=bytes(reply.block.header.last_block_id.hash).hex(),
            deposits=found,
            txids=txids,
        )

    # --- the node ---------------------------------------------------------------------
    def _block(self, height: int) -> Any:
        return self._call(self._tendermint.GetBlockByHeight, GetBlockByHeightRequest(height=height))

    def _succeeded(self, txid: str, height: int) -> bool:
        """Whether the block's transaction succeeded, from the node's index."""
        result = self._node.wait_tx(txid, self._index_wait)
        if result.height != height:  # the index and the blocks disagree: ask again later
            raise DependencyUnavailable(f"cosmos: {txid} indexed at {result.height}, not {height}")
        return result.succeeded

    def _call(self, method: Callable[..., Any], request: Any) -> Any:
        try:
            return method(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            code, details = exc.code(), str(exc.details())
            if code in _TRANSIENT or _NOT_YET in details:
                raise DependencyUnavailable(f"cosmos node: {code.name}: {details}") from exc
            raise QueryRefused(f"cosmos node: {code.name}: {details}") from exc


def transfers(
    txid: str, raw: bytes, denom: str, asset: str, is_ours: Callable[[str], bool]
) -> Iterator[RawDeposit]:
    """The transaction's top-level bank transfers of `denom` (as `asset`) to addresses
    is_ours knows, read from its bytes (whether it succeeded is the caller's question).
    Bytes that are no transaction pay nobody: the chain refuses what it cannot decode."""
    try:
        body = TxBody.FromString(TxRaw.FromString(raw).body_bytes)
    except DecodeError:
        return
    for i, packed in enumerate(body.messages):
        try:
            if packed.type_url == SEND:
                send = MsgSend.FromString(packed.value)
                outputs = [(f"msg{i}", send.to_address, send.amount)]
            elif packed.type_url == MULTI_SEND:
                multi = MsgMultiSend.FromString(packed.value)
                outputs = [
                    (f"msg{i}.out{j}", o.address, o.coins) for j, o in enumerate(multi.outputs)
                ]
            else:
                continue
        except DecodeError:
            continue
        for position, to, coins in outputs:
            address, amount = _canonical(to), _amount(coins, denom)
            if address is not None and amount > 0 and is_ours(address):
                yield RawDeposit(txid, position, address, asset, amount)


def _canonical(address: str) -> str | None:
    """The bech32 address in its one canonical (lower-case) form, or None if it is none:
    bech32 is case-insensitive and the chain pays an upper-case spelling to the same
    account, while our addresses are stored lower-case."""
    hrp, words = bech32.bech32_decode(address)
    if hrp is None or words is None:
        return None
    return str(bech32.bech32_encode(hrp, words))


def _amount(coins: Sequence[Coin], denom: str) -> int:
    """The denom's amount among a transfer's coins (the SDK admits each denom once, as a
    plain decimal, in a transaction that succeeds)."""
    return sum(int(c.amount) for c in coins if c.denom == denom and _DIGITS.fullmatch(c.amount))
