"""The signer rebuilds what it signs (Bitcoin): it derives the key each input claims
and refuses a claim whose script is not the prevout's before any seed is unwrapped,
checks a claimed change output the same way, and computes the BIP143 sighashes
itself (the signed transaction verifies under consensus rules). The digest path is
gone."""

from __future__ import annotations

from pathlib import Path

import coincurve
import pytest
from bitcoin.core import CMutableTransaction, CTransaction

from adapters.chains.bitcoin.script import output_script
from adapters.chains.bitcoin.tx import Plan, Utxo, p2wpkh_script, sighash_p2wpkh, to_request
from sagas.errors import KeyAccessDenied
from sagas.keys.wallets import deposit_address
from sagas.signing.activities import SigningActivities
from sagas.signing.workflows import SignBtcWorkflow
from services.signer.signer import Signer
from tests.fakes import FakeKeyWrapper
from tests.wallets import btc_wallet


class _Counting(FakeKeyWrapper):
    unwraps = 0

    def unwrap(self, ciphertext: str, operation: str | None = None) -> bytes:
        type(self).unwraps += 1
        return super().unwrap(ciphertext, operation)


@pytest.fixture
def wallet(tmp_path: Path):  # type: ignore[no-untyped-def]
    w = btc_wallet(f"sqlite:///{tmp_path / 'keys.sqlite3'}")
    payee = deposit_address(w.store, w.deriver, "w1", "bitcoin", "c2:BTC", "c2", "BTC")
    _Counting.unwraps = 0
    signer = Signer(_Counting(w.vault, may_unwrap=True), w.store, w.deriver)
    return signer, w.coin, payee, w.change


def _request(coin, payee, change, index=None):  # type: ignore[no-untyped-def]
    utxos = (Utxo("11" * 32, 0, coin.address, 60_000), Utxo("22" * 32, 3, coin.address, 50_000))
    plan = Plan(utxos, ((payee.address, 70_000),), 39_000, 1_000)
    keys = [(0, coin.index if index is None else index)] * 2
    return to_request(plan, change.address, change.index, keys)


def test_the_signed_transaction_verifies_with_sighashes_the_signer_computed(wallet) -> None:  # type: ignore[no-untyped-def]
    signer, coin, payee, change = wallet
    request = _request(coin, payee, change)
    tx = CTransaction.deserialize(signer.sign_btc_transaction("op", "w1", request))
    assert _Counting.unwraps == 1  # one unwrap for the whole transaction
    assert [o.nValue for o in tx.vout] == [70_000, 39_000]
    # (That btcd accepts them is tests/redteam and tests/integration/test_bitcoin_*.)
    unsigned = CMutableTransaction.from_tx(tx)
    for n, txin in enumerate(request.inputs):
        sig, pub = list(tx.wit.vtxinwit[n].scriptWitness)
        assert p2wpkh_script(pub) == bytes.fromhex(txin.script_pubkey_hex)
        assert sig[-1] == 1  # SIGHASH_ALL
        digest = sighash_p2wpkh(unsigned, n, txin.value, pub)
        assert coincurve.PublicKey(pub).verify(sig[:-1], digest, hasher=None)


def test_a_key_claim_that_is_not_the_prevouts_is_refused_before_any_unwrap(wallet) -> None:  # type: ignore[no-untyped-def]
    signer, coin, payee, change = wallet
    with pytest.raises(KeyAccessDenied):  # the key of another index
        signer.sign_btc_transaction("op", "w1", _request(coin, payee, change, coin.index + 1))
    foreign = _request(coin, payee, change)
    other = foreign.inputs[0].model_copy(
        update={"script_pubkey_hex": output_script(payee.address).hex()}
    )
    with pytest.raises(KeyAccessDenied):  # the prevout is not the claimed key's
        signer.sign_btc_transaction("op", "w1", foreign.model_copy(update={"inputs": [other]}))
    fake_change = foreign.outputs[1].model_copy(
        update={"script_pubkey_hex": output_script(payee.address).hex()}
    )
    with pytest.raises(KeyAccessDenied):  # "change" that is not the internal chain's key
        signer.sign_btc_transaction(
            "op", "w1", foreign.model_copy(update={"outputs": [foreign.outputs[0], fake_change]})
        )
    assert _Counting.unwraps == 0


def test_the_digest_signing_path_is_gone() -> None:
    names = {
        getattr(method, "__temporal_activity_definition").name
        for method in (SigningActivities.sign_evm, SigningActivities.sign_btc)
    }
    assert names == {"signer.sign_evm", "signer.sign_btc_transaction"}
    assert not hasattr(SigningActivities, "sign_btc_digests")
    assert getattr(SignBtcWorkflow, "__temporal_workflow_definition").name == "SignBtcTransaction"
