"""The signer's activities: thin, each signs exactly what it is given, with one unwrap."""

from __future__ import annotations

from temporalio import activity

from sagas.ports import BitcoinSigner, EvmKeySigner
from sagas.signing import (
    Signature,
    SignBtcRequest,
    SignBtcResult,
    SignedTransaction,
    SignEvmRequest,
)


class SigningActivities:
    def __init__(self, evm: EvmKeySigner, btc: BitcoinSigner) -> None:
        self._evm = evm
        self._btc = btc

    @activity.defn(name="signer.sign_evm")
    def sign_evm(self, request: SignEvmRequest) -> SignedTransaction:
        raw = self._evm.sign_evm_transaction(
            request.operation_id, request.wallet_id, request.index, dict(request.tx)
        )
        return SignedTransaction(raw_hex=raw.hex())

    @activity.defn(name="signer.sign_btc")
    def sign_btc(self, request: SignBtcRequest) -> SignBtcResult:
        signatures = self._btc.sign_btc_digests(
            request.operation_id,
            request.wallet_id,
            [(d.change, d.index, bytes.fromhex(d.digest_hex)) for d in request.digests],
        )
        return SignBtcResult(
            signatures=[
                Signature(der_hex=sig.hex(), pubkey_hex=pub.hex()) for sig, pub in signatures
            ]
        )
