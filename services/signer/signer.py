"""The signer: the only process whose OpenBao role may unwrap a seed.

For each signature it unwraps the wallet's seed (the operation id recorded in
OpenBao's audit log), derives the one key it needs, signs, and drops both. It
logs operation ids, wallets and paths, never key material.

It signs transactions, never digests: for Bitcoin it derives the key each input
claims and refuses unless that key's P2WPKH script is the prevout's (the platform
holds only P2WPKH coins), checks a claimed change output the same way, and computes
every BIP143 sighash itself. The guard (adapters/operations/guard.py) then checks
the transaction against the authorised payment and the signer's own record.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any, Protocol, cast

import coincurve
from eth_account import Account

from adapters.chains.bitcoin.networks import select_network
from adapters.chains.bitcoin.tx import (
    finish,
    from_request,
    p2wpkh_script,
    sighash_p2wpkh,
    unsigned_txid,
)
from adapters.chains.cosmos.tx import (
    DecodedCosmosTx,
    NotAPlatformTx,
    UnsignedCosmosTx,
    assemble,
    decode,
    sign_doc,
)
from adapters.keys.hd import cosmos_address
from sagas.errors import KeyAccessDenied
from sagas.keys import Chain
from sagas.ports import KeyDerivation, KeyStore, KeyWrapper
from sagas.signing import SignCosmosRequest, UnsignedBtcTransaction


class SigningCheck(Protocol):
    """Checks what is to be signed; calls `sign()` only if it may be, and records the
    signature before returning it. KeyAccessDenied otherwise."""

    def sign_evm(
        self,
        operation: str,
        wallet_id: str,
        index: int,
        address: str,
        tx: dict[str, object],
        sign: Callable[[], bytes],
    ) -> bytes: ...

    def sign_btc(
        self,
        operation: str,
        wallet_id: str,
        tx: UnsignedBtcTransaction,
        change_outputs: frozenset[int],
        txid: str,
        sign: Callable[[], bytes],
    ) -> bytes: ...

    def sign_cosmos(
        self,
        operation: str,
        wallet_id: str,
        index: int,
        address: str,
        tx: DecodedCosmosTx,
        sign: Callable[[], bytes],
    ) -> bytes: ...


log = logging.getLogger("custody.signer")


class Signer:
    def __init__(
        self,
        unwrapper: KeyWrapper,
        store: KeyStore,
        deriver: KeyDerivation,
        guard: SigningCheck | None = None,
    ) -> None:
        """`guard` refuses (KeyAccessDenied) what is not an authorised payment and keeps
        the record of what was signed; the signer process always has one, tests of the
        signing paths alone may not (the Bitcoin key and script checks hold without)."""
        select_network(deriver.btc_network)  # python-bitcoinlib reads scripts per network
        self._guard = guard
        self._unwrapper = unwrapper
        self._store = store
        self._deriver = deriver

    def __repr__(self) -> str:
        return "Signer()"

    def _private_key(
        self, operation: str, wallet_id: str, chain: Chain, change: int, index: int
    ) -> bytes:
        wallet = self._store.wallet(wallet_id)
        if wallet is None:
            raise KeyAccessDenied(f"the signer holds no wallet {wallet_id}")
        seed = self._unwrapper.unwrap(wallet.wrapped_seed, operation=operation)
        try:
            return self._deriver.private_key(seed, chain, change, index)
        finally:
            del seed

    def evm_address(self, wallet_id: str, index: int) -> str:
        wallet = self._store.wallet(wallet_id)
        if wallet is None:
            raise KeyAccessDenied(f"the signer holds no wallet {wallet_id}")
        return self._deriver.address(wallet.xpubs["ethereum"], "ethereum", 0, index)

    def sign_evm_transaction(
        self, operation: str, wallet_id: str, index: int, tx: dict[str, object]
    ) -> bytes:
        """The raw signed transaction for the key at m/44'/60'/0'/0/index."""

        address = self.evm_address(wallet_id, index)

        def sign() -> bytes:
            key = self._private_key(operation, wallet_id, "ethereum", 0, index)
            try:
                # The xpub the address came from and the seed must agree (a wallet row
                # with another xpub beside the same wrapped seed signs nothing).
                if Account.from_key(key).address != address:
                    raise KeyAccessDenied(f"{operation}: wallet {wallet_id} key mismatch")
                signed = Account.sign_transaction(cast(Any, tx), key)
            finally:
                del key
            return bytes(signed.raw_transaction)

        if self._guard is None:
            raw = sign()
        else:
            raw = self._guard.sign_evm(operation, wallet_id, index, address, tx, sign)
        log.info("signed operation %s: wallet %s ethereum 0/%d", operation, wallet_id, index)
        return raw

    def sign_btc_transaction(
        self, operation: str, wallet_id: str, tx: UnsignedBtcTransaction
    ) -> bytes:
        """The transaction with every input signed (SIGHASH_ALL, BIP143), serialized; one
        unwrap of the seed for the whole transaction."""
        wallet = self._store.wallet(wallet_id)
        if wallet is None:
            raise KeyAccessDenied(f"the signer holds no wallet {wallet_id}")
        xpub = wallet.xpubs["bitcoin"]
        # Public derivation first: a wrong claim is refused before any seed is unwrapped.
        pubkeys = []
        for n, txin in enumerate(tx.inputs):
            pub = self._deriver.public_key(xpub, "bitcoin", txin.change, txin.index)
            if p2wpkh_script(pub) != bytes.fromhex(txin.script_pubkey_hex):
                raise KeyAccessDenied(
                    f"{operation}: input {n} does not spend wallet {wallet_id}'s key "
                    f"{txin.change}/{txin.index}"
                )
            pubkeys.append(pub)
        change_outputs = set()
        for n, out in enumerate(tx.outputs):
            if out.change_index is None:
                continue
            pub = self._deriver.public_key(xpub, "bitcoin", 1, out.change_index)
            if p2wpkh_script(pub) != bytes.fromhex(out.script_pubkey_hex):
                raise KeyAccessDenied(f"{operation}: output {n} is not the wallet's change")
            change_outputs.add(n)
        unsigned = from_request(tx)

        def sign() -> bytes:
            seed = self._unwrapper.unwrap(wallet.wrapped_seed, operation=operation)
            try:
                witnesses = []
                for n, txin in enumerate(tx.inputs):
                    key = coincurve.PrivateKey(
                        self._deriver.private_key(seed, "bitcoin", txin.change, txin.index)
                    )
                    pub = key.public_key.format(compressed=True)
                    if pub != pubkeys[n]:  # the xpub and the seed disagree: sign nothing
                        raise KeyAccessDenied(f"{operation}: wallet {wallet_id} key mismatch")
                    digest = sighash_p2wpkh(unsigned, n, txin.value, pub)
                    witnesses.append((key.sign(digest, hasher=None), pub))
                    del key
            finally:
                del seed
            return finish(unsigned, witnesses)

        if self._guard is None:
            raw = sign()
        else:
            raw = self._guard.sign_btc(
                operation,
                wallet_id,
                tx,
                frozenset(change_outputs),
                unsigned_txid(unsigned),
                sign,
            )
        log.info(
            "signed operation %s: wallet %s bitcoin, %d input(s)",
            operation,
            wallet_id,
            len(tx.inputs),
        )
        return raw

    def sign_cosmos_transaction(self, request: SignCosmosRequest) -> bytes:
        """The TxRaw of the request's transaction signed (SIGN_MODE_DIRECT, secp256k1
        over SHA-256 of the SignDoc, low-S r||s) by the key at m/44'/118'/0'/0/index. The
        signer decodes the bytes itself: the transaction's one signer must be that key,
        and the guard checks what the decoded transaction does."""
        operation, wallet_id, index = request.operation_id, request.wallet_id, request.index
        wallet = self._store.wallet(wallet_id)
        if wallet is None or "cosmos" not in wallet.xpubs:
            raise KeyAccessDenied(f"the signer holds no Cosmos key of wallet {wallet_id}")
        unsigned = UnsignedCosmosTx(
            body_bytes_hex=request.body_bytes_hex,
            auth_info_bytes_hex=request.auth_info_bytes_hex,
            chain_id=request.chain_id,
            account_number=request.account_number,
        )
        try:
            decoded = decode(unsigned)
        except NotAPlatformTx as exc:
            raise KeyAccessDenied(f"{operation}: {exc}") from exc
        pub = self._deriver.public_key(wallet.xpubs["cosmos"], "cosmos", 0, index)
        if decoded.public_key != pub:
            raise KeyAccessDenied(f"{operation}: the transaction's signer is another key")
        address = cosmos_address(pub, self._deriver.cosmos_prefix)
        digest = hashlib.sha256(sign_doc(unsigned)).digest()

        def sign() -> bytes:
            key = coincurve.PrivateKey(self._private_key(operation, wallet_id, "cosmos", 0, index))
            try:
                if key.public_key.format(compressed=True) != pub:
                    raise KeyAccessDenied(f"{operation}: wallet {wallet_id} key mismatch")
                # libsecp256k1 signs low-S (RFC 6979 nonces): r||s is the compact form.
                signature = key.sign_recoverable(digest, hasher=None)[:64]
            finally:
                del key
            return assemble(unsigned, signature)

        if self._guard is None:
            raw = sign()
        else:
            raw = self._guard.sign_cosmos(operation, wallet_id, index, address, decoded, sign)
        log.info("signed operation %s: wallet %s cosmos 0/%d", operation, wallet_id, index)
        return raw


class CustodyEvmSigner:
    """A TransactionSigner for one custody address, signing through the Signer."""

    def __init__(self, signer: Signer, wallet_id: str, index: int, operation: str) -> None:
        self._signer = signer
        self._wallet_id = wallet_id
        self._index = index
        self._operation = operation
        self._address = signer.evm_address(wallet_id, index)

    @property
    def address(self) -> str:
        return self._address

    def sign_transaction(self, tx: dict[str, object]) -> bytes:
        return self._signer.sign_evm_transaction(self._operation, self._wallet_id, self._index, tx)
