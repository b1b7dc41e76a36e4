"""Funding on the stack's test chain (simd) from its faucet account: a test-chain key the
stack wrote to a private file (`CUSTODY_COSMOS_FAUCET`), never a platform key; the
platform's own keys are only ever used by the signer."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from cosmpy.aerial.wallet import LocalWallet

from adapters.chains.cosmos.node import CosmosNode, CosmosTxResult, SequenceMismatch
from adapters.chains.cosmos.tx import address_of, assemble, build, msg_send, sign_doc
from sagas.errors import NotOnThisNetwork

TEST_CHAIN_IDS = frozenset({"custody-pos-1"})
# Gas grows with the sends in one transaction (one ~91k, two to new accounts ~122k,
# eight ~201k on simd): room for each.
_FEE, _GAS, _GAS_PER_SEND = 2_000, 100_000, 30_000


class CosmosFaucet:
    def __init__(self, node: CosmosNode, faucet_file: Path, denom: str = "uatom") -> None:
        chain_id = node.chain_id()
        if chain_id not in TEST_CHAIN_IDS:
            raise NotOnThisNetwork(f"faucet on chain {chain_id}")
        secret = json.loads(faucet_file.read_text())
        self._key = LocalWallet.from_mnemonic(secret["mnemonic"], prefix="cosmos").signer()
        self._public = self._key.public_key.public_key_bytes
        self.address = address_of(self._public)
        self._node, self._chain_id, self._denom = node, chain_id, denom
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CosmosFaucet({self.address})"

    def fund(self, *payments: tuple[str, int], timeout: float = 30.0) -> CosmosTxResult:
        """Send each (address, amount in uatom) in one transaction; its result once in a
        block (RuntimeError if it failed). Retries a sequence another sender took."""
        sends = [msg_send(self.address, to, amount, self._denom) for to, amount in payments]
        with self._lock:
            for _ in range(10):
                account = self._node.account(self.address)
                if account is None:
                    raise RuntimeError(f"the faucet {self.address} has no account")
                number, sequence = account
                gas = _GAS + _GAS_PER_SEND * len(sends)
                u = build(
                    sends, self._public, sequence, number, self._chain_id, _FEE, self._denom, gas
                )
                signature = self._key.sign(sign_doc(u), deterministic=True, canonicalise=True)
                try:
                    name = self._node.broadcast(assemble(u, signature))
                except SequenceMismatch:
                    time.sleep(0.5)
                    continue
                result = self._node.wait_tx(name, timeout)
                if not result.succeeded:
                    raise RuntimeError(f"faucet transaction {name} failed: {result.raw_log}")
                return result
        raise RuntimeError("the faucet's sequence was taken ten times")
