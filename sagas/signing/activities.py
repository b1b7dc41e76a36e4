"""The signer's activities: thin, each hands the signer the whole transaction."""

from __future__ import annotations

from temporalio import activity

from sagas.ports import BitcoinSigner, CosmosKeySigner, EvmKeySigner
from sagas.signing import SignBtcRequest, SignCosmosRequest, SignedTransaction, SignEvmRequest


class SigningActivities:
    def __init__(
        self, evm: EvmKeySigner, btc: BitcoinSigner, cosmos: CosmosKeySigner | None = None
    ) -> None:
        self._evm = evm
        self._btc = btc
        self._cosmos = cosmos

    @activity.defn(name="signer.sign_evm")
    def sign_evm(self, request: SignEvmRequest) -> SignedTransaction:
        raw = self._evm.sign_evm_transaction(
            request.operation_id, request.wallet_id, request.index, dict(request.tx)
        )
        return SignedTransaction(raw_hex=raw.hex())

    @activity.defn(name="signer.sign_btc_transaction")
    def sign_btc(self, request: SignBtcRequest) -> SignedTransaction:
        raw = self._btc.sign_btc_transaction(request.operation_id, request.wallet_id, request.tx)
        return SignedTransaction(raw_hex=raw.hex())

    @activity.defn(name="signer.sign_cosmos")
    def sign_cosmos(self, request: SignCosmosRequest) -> SignedTransaction:
        if self._cosmos is None:
            raise RuntimeError("this signer signs no Cosmos transactions")
        raw = self._cosmos.sign_cosmos_transaction(request)
        return SignedTransaction(raw_hex=raw.hex())
