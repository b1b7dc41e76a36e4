"""The signer: the only process whose OpenBao role may unwrap a seed.

For each signature it unwraps the wallet's seed (the operation id recorded in
OpenBao's audit log), derives the one key it needs, signs, and drops both. It
logs operation ids, wallets and paths, never key material.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol, cast

import coincurve
from eth_account import Account

from sagas.keys import Chain
from sagas.ports import KeyDerivation, KeyStore, KeyWrapper


class SigningCheck(Protocol):
    def check_evm(
        self, operation: str, wallet_id: str, index: int, tx: dict[str, object]
    ) -> None: ...

    def check_btc(self, operation: str) -> None: ...


log = logging.getLogger("custody.signer")


class Signer:
    def __init__(
        self,
        unwrapper: KeyWrapper,
        store: KeyStore,
        deriver: KeyDerivation,
        guard: SigningCheck | None = None,
    ) -> None:
        """`guard` refuses (KeyAccessDenied) what is not an approved withdrawal; the
        signer process always has one, tests of the signing paths alone may not."""
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
            raise KeyError(f"no wallet {wallet_id}")
        seed = self._unwrapper.unwrap(wallet.wrapped_seed, operation=operation)
        try:
            return self._deriver.private_key(seed, chain, change, index)
        finally:
            del seed

    def evm_address(self, wallet_id: str, index: int) -> str:
        wallet = self._store.wallet(wallet_id)
        if wallet is None:
            raise KeyError(f"no wallet {wallet_id}")
        return self._deriver.address(wallet.xpubs["ethereum"], "ethereum", 0, index)

    def sign_evm_transaction(
        self, operation: str, wallet_id: str, index: int, tx: dict[str, object]
    ) -> bytes:
        """The raw signed transaction for the key at m/44'/60'/0'/0/index."""
        if self._guard is not None:
            self._guard.check_evm(operation, wallet_id, index, tx)
        key = self._private_key(operation, wallet_id, "ethereum", 0, index)
        try:
            signed = Account.sign_transaction(cast(Any, tx), key)
        finally:
            del key
        log.info("signed operation %s: wallet %s ethereum 0/%d", operation, wallet_id, index)
        return bytes(signed.raw_transaction)

    def sign_btc_digests(
        self, operation: str, wallet_id: str, requests: list[tuple[int, int, bytes]]
    ) -> list[tuple[bytes, bytes]]:
        """(DER signature, compressed pubkey) for each (change, index, BIP143 digest), with
        one unwrap of the seed for the whole transaction."""
        if self._guard is not None:
            self._guard.check_btc(operation)
        wallet = self._store.wallet(wallet_id)
        if wallet is None:
            raise KeyError(f"no wallet {wallet_id}")
        seed = self._unwrapper.unwrap(wallet.wrapped_seed, operation=operation)
        try:
            out = []
            for change, index, digest in requests:
                key = coincurve.PrivateKey(
                    self._deriver.private_key(seed, "bitcoin", change, index)
                )
                out.append((key.sign(digest, hasher=None), key.public_key.format(compressed=True)))
                del key
        finally:
            del seed
        log.info(
            "signed operation %s: wallet %s bitcoin, %d input(s)",
            operation,
            wallet_id,
            len(requests),
        )
        return out


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
