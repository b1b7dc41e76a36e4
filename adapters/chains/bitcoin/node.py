"""BitcoinNode on btcd's JSON-RPC; blocks are parsed and hash-checked with python-bitcoinlib,
so the platform never takes the node's word for what a block contains."""

from __future__ import annotations

from typing import Any

import httpx
from bitcoin.core import CBlock, b2lx

from adapters.chains.bitcoin.networks import TEST_NETWORKS
from sagas.errors import ChainRejected, DependencyUnavailable, NotOnThisNetwork
from sagas.ports import BlockInfo


class BtcdNode:
    def __init__(
        self, rpc_url: str, auth: tuple[str, str], network: str, timeout: float = 10.0
    ) -> None:
        self._client = httpx.Client(base_url=rpc_url, auth=auth, timeout=timeout)
        self._network = network
        self._id = 0

    def __repr__(self) -> str:
        return f"BtcdNode(network={self._network!r})"

    def _rpc(self, method: str, *params: Any) -> Any:
        self._id += 1
        try:
            reply = self._client.post(
                "/", json={"jsonrpc": "1.0", "id": self._id, "method": method, "params": params}
            )
        except httpx.TransportError as exc:
            raise DependencyUnavailable(f"btcd: {method}: {type(exc).__name__}") from exc
        if reply.status_code in (401, 403):
            raise DependencyUnavailable(f"btcd: {method}: authentication refused")
        body = reply.json()
        if body.get("error"):
            raise ChainRejected(f"btcd: {method}: {body['error'].get('message')}")
        return body["result"]

    def height(self) -> int:
        return int(self._rpc("getblockcount"))

    def block_hash(self, height: int) -> str:
        return str(self._rpc("getblockhash", height))

    def block(self, block_hash: str) -> BlockInfo:
        raw = bytes.fromhex(self._rpc("getblock", block_hash, 0))
        block = CBlock.deserialize(raw)
        computed = b2lx(block.GetHash())
        if computed != block_hash:
            raise ChainRejected(f"btcd returned block {computed} for {block_hash}")
        header = self._rpc("getblockheader", block_hash, True)
        return BlockInfo(
            height=int(header["height"]),
            block_hash=computed,
            previous_hash=b2lx(block.hashPrevBlock),
            txids=tuple(b2lx(tx.GetTxid()) for tx in block.vtx),
        )

    def raw_block(self, block_hash: str) -> CBlock:
        """The block, parsed, its hash checked against `block_hash`."""
        block = CBlock.deserialize(bytes.fromhex(self._rpc("getblock", block_hash, 0)))
        if b2lx(block.GetHash()) != block_hash:
            raise ChainRejected(f"btcd returned another block for {block_hash}")
        return block

    def send_raw(self, raw: bytes) -> str:
        """Broadcast; returns the txid. A transaction the node already has is fine."""
        try:
            return str(self._rpc("sendrawtransaction", raw.hex()))
        except ChainRejected as exc:
            text = str(exc).lower()
            if "already have transaction" in text or "already exists" in text:
                from adapters.chains.bitcoin.tx import txid

                return txid(raw)
            raise

    def tx_out(self, txid: str, vout: int) -> dict[str, Any] | None:
        """The output if it is unspent (mempool included), else None."""
        result = self._rpc("gettxout", txid, vout, True)
        return None if result is None else dict(result)

    def in_mempool(self, txid: str) -> bool:
        return txid in self._rpc("getrawmempool")

    def mine(self, blocks: int) -> list[str]:
        """Mine blocks to the node's mining address (test networks only); their hashes."""
        if self._network not in TEST_NETWORKS:
            raise NotOnThisNetwork(f"mining on {self._network}")
        return [str(h) for h in self._rpc("generate", blocks)]

    def close(self) -> None:
        self._client.close()
