"""ChainReader for Bitcoin: outputs paying platform addresses, from blocks parsed locally."""

from __future__ import annotations

from collections.abc import Callable

from bitcoin.core import b2lx
from bitcoin.wallet import CBitcoinAddress, CBitcoinAddressError

from adapters.chains.bitcoin.networks import select_network
from adapters.chains.bitcoin.node import BtcdNode
from sagas.chainwatch import BlockScan, RawDeposit


class BitcoinChainReader:
    chain = "bitcoin"

    def __init__(self, node: BtcdNode, network: str) -> None:
        select_network(network)
        self._node = node

    def head(self) -> int:
        return self._node.height()

    def block_hash(self, height: int) -> str:
        return self._node.block_hash(height)

    def scan(self, height: int, is_ours: Callable[[str], bool]) -> BlockScan:
        block_hash = self._node.block_hash(height)
        block = self._node.raw_block(block_hash)
        found = []
        txids = []
        for tx in block.vtx:
            txid = b2lx(tx.GetTxid())
            txids.append(txid)
            for n, out in enumerate(tx.vout):
                try:
                    address = str(CBitcoinAddress.from_scriptPubKey(out.scriptPubKey))
                except CBitcoinAddressError:
                    continue  # OP_RETURN, bare multisig, ...: not a deposit to an address
                if out.nValue > 0 and is_ours(address):
                    found.append(RawDeposit(txid, f"vout{n}", address, "BTC", int(out.nValue)))
        return BlockScan(block_hash, b2lx(block.hashPrevBlock), found, txids)
