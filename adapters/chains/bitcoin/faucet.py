"""Test-network funding from the stack's miner key: mature coinbase outputs, spent to any
address. The key is a test-network key the stack generated (`.stack/btcd/faucet.json`);
it never signs for clients."""

from __future__ import annotations

import coincurve
from bitcoin.wallet import CBitcoinSecret

from adapters.chains.bitcoin.networks import TEST_NETWORKS, select_network
from adapters.chains.bitcoin.node import BtcdNode
from adapters.chains.bitcoin.tx import Utxo, digest, finish, select, unsigned
from sagas.errors import NotOnThisNetwork

COINBASE_MATURITY = 100


class BtcFaucet:
    def __init__(self, node: BtcdNode, network: str, wif: str, address: str) -> None:
        if network not in TEST_NETWORKS:
            raise NotOnThisNetwork(f"faucet on {network}")
        select_network(network)
        self._node = node
        secret = CBitcoinSecret(wif)
        self._key = coincurve.PrivateKey(bytes(secret)[:32])
        self._pub = bytes(secret.pub)
        self.address = address
        self._scan_from = 1  # coinbases below this height are spent: no need to look again
        self._spent: set[str] = set()  # spent here, maybe not mined yet (gettxout lags)

    def __repr__(self) -> str:
        return f"BtcFaucet({self.address})"

    def _mature_coin(self, at_least: int) -> Utxo:
        tip = self._node.height()
        if tip < COINBASE_MATURITY + 1:
            self._node.mine(COINBASE_MATURITY + 1 - tip)
            tip = self._node.height()
        for height in range(self._scan_from, tip - COINBASE_MATURITY + 1):
            block = self._node.raw_block(self._node.block_hash(height))
            coinbase = block.vtx[0]
            txid = coinbase.GetTxid()[::-1].hex()
            out = self._node.tx_out(txid, 0)
            if out is None and height == self._scan_from:
                self._scan_from = height + 1
            if (
                out is not None
                and txid not in self._spent
                and out.get("confirmations", 0) > COINBASE_MATURITY
                and coinbase.vout[0].nValue >= at_least
            ):
                return Utxo(txid, 0, self.address, int(coinbase.vout[0].nValue))
        self._node.mine(1)
        return self._mature_coin(at_least)

    def fund(self, address: str, sat: int, fee_rate: int = 2) -> str:
        """Send `sat` to `address` (unconfirmed until a block is mined); the txid."""
        coin = self._mature_coin(sat + 10_000)
        plan = select([coin], [(address, sat)], fee_rate)
        tx = unsigned(plan, self.address)
        sigs = [
            (self._key.sign(digest(tx, i, u, self._pub), hasher=None), self._pub)
            for i, u in enumerate(plan.inputs)
        ]
        self._spent.add(coin.txid)
        return self._node.send_raw(finish(tx, sigs))
