"""BitcoinSigner and EvmKeySigner: the Signer in process (seeds under tests.fakes'
FakeKeyWrapper, no guard), the same behind the signer process's delay wrapper
(services/signer/main.py _Slow, no delay), and TemporalSigningClient reaching the real
signer process (OpenBao, its guard, a governed database) as tests/redteam/conftest.py
does, each payment approved first as that guard requires.

A signed Bitcoin transaction spends exactly the request's inputs (outpoints, sequences)
and pays exactly its outputs at its version and lock time, and btcd would take it into
its mempool: its witnesses verify against the real coins (swapped, they do not). An EVM
transaction has exactly the requested fields and recovers to the address the wallet's
xpub derives at 0/index. A key claim that is not the prevout's, or "change" that is not
the wallet's, is refused (KeyAccessDenied); so, per the port, is an unknown wallet."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bitcoin.core import CTransaction, CTxWitness, Hash160, b2lx
from bitcoin.wallet import CBech32BitcoinAddress
from eth_account import Account
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from hexbytes import HexBytes

from adapters.chains.bitcoin.faucet import BtcFaucet
from adapters.chains.bitcoin.node import BtcdNode
from adapters.chains.bitcoin.script import output_script
from adapters.chains.bitcoin.tx import Plan, Utxo, to_request
from adapters.keys.hd import BipDeriver
from adapters.keys.store import SqlKeyStore
from sagas.errors import KeyAccessDenied
from sagas.keys import Chain
from sagas.keys.wallets import create_wallet, deposit_address
from sagas.ports import BitcoinSigner, EvmKeySigner
from sagas.signing import UnsignedBtcTransaction
from services.platform import Platform
from services.settings import PlatformSettings
from services.signer.main import _Slow
from services.signer.signer import Signer
from tests.fakes import FakeKeyWrapper
from tests.redteam.conftest import approve, attacker, governed, signer_queue

__all__ = ["attacker", "governed", "signer_queue"]  # the red team's fixtures, used here
DERIVER = BipDeriver("simnet")
PAY, FEE = 70_000, 2_000


@dataclass
class Rig:
    signer: Any  # BitcoinSigner and EvmKeySigner
    store: SqlKeyStore  # the signer's wallets and addresses
    wallet: str
    evm_index: int  # a key it may sign with (for the guard: the hot wallet's)
    authorise: Callable[[str, str, int, str], None]  # operation, asset, amount, to
    chain_id: int = 31337
    temporal: bool = False

    def xpub(self, chain: Chain) -> str:
        return self.store.wallet(self.wallet).xpubs[chain]  # type: ignore[union-attr]

    def coin_key(self) -> tuple[str, int]:
        """A new deposit address of the wallet and its index on the external chain."""
        account = f"contract:{uuid.uuid4().hex[:8]}:BTC"
        a = deposit_address(self.store, DERIVER, self.wallet, "bitcoin", account, None, "BTC")
        return a.address, a.index

    def payment(self, coins: list[Utxo], keys: list[int], to: str) -> UnsignedBtcTransaction:
        """PAY to `to` from the coins (keys 0/k), FEE, the rest to a new change address."""
        xpub, account = self.xpub("bitcoin"), f"change:{uuid.uuid4().hex[:8]}"
        change = self.store.assign(
            self.wallet,
            "bitcoin",
            account,
            None,
            "BTC",
            lambda i: DERIVER.address(xpub, "bitcoin", 1, i),
            change=1,
        )
        plan = Plan(tuple(coins), ((to, PAY),), sum(c.amount for c in coins) - PAY - FEE, FEE)
        return to_request(plan, change.address, change.index, [(0, k) for k in keys])


@pytest.fixture(params=["in-process", "slow-wrapper", "temporal"])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Rig:
    if request.param != "temporal":
        vault: dict[str, bytes] = {}
        store = SqlKeyStore(f"sqlite:///{tmp_path / 'keys.sqlite3'}")
        create_wallet("w1", DERIVER, FakeKeyWrapper(vault, may_unwrap=False), store)
        signer = Signer(FakeKeyWrapper(vault, may_unwrap=True), store, DERIVER)
        port = signer if request.param == "in-process" else _Slow(signer, 0.0)
        return Rig(port, store, "w1", 3, lambda *_: None)
    request.node.add_marker(pytest.mark.stack)
    s: PlatformSettings = request.getfixturevalue("stack_settings")
    url: str = request.getfixturevalue("fresh_postgres_url")
    client = request.getfixturevalue("attacker")  # the worker's client; the schema, governed
    p = Platform(s, url)
    p.create_wallet()  # under OpenBao: only the signer process unwraps it
    chain = {"BTC": "bitcoin", "ETH": "ethereum"}
    return Rig(
        client,
        p.keys,
        s.platform_wallet,
        p.hot_wallet().index,
        lambda op, asset, amount, to: approve(url, op, asset, chain[asset], amount, to),
        s.eth_chain_id,
        temporal=True,
    )


def _btcd(s: PlatformSettings) -> tuple[BtcdNode, BtcFaucet]:
    """btcd and the stack's faucet (its key stays in this frame, never the test's)."""
    node = BtcdNode(s.btc_rpc_url, s.btc_rpc_auth(), s.btc_network)
    key = json.loads((s.btc_rpc_credentials.parent / "faucet.json").read_text())
    return node, BtcFaucet(node, s.btc_network, key["wif"], key["address"])


def _external() -> str:
    return str(CBech32BitcoinAddress.from_bytes(0, bytes(Hash160(secrets.token_bytes(16)))))


def _approved(rig: Rig, asset: str, amount: int, to: str) -> str:
    operation = f"wd-contract-{uuid.uuid4().hex[:10]}"
    rig.authorise(operation, asset, amount, to)
    return operation


def test_is_the_port(rig: Rig) -> None:
    assert isinstance(rig.signer, BitcoinSigner) and isinstance(rig.signer, EvmKeySigner)


@pytest.mark.stack
def test_a_bitcoin_transaction_is_the_request_signed_and_btcd_takes_it(
    rig: Rig, stack_settings: PlatformSettings
) -> None:
    node, faucet = _btcd(stack_settings)
    coins, keys = [], []
    for amount in (60_000, 50_000):  # two real coins, of two keys
        address, index = rig.coin_key()
        txid = faucet.fund(address, amount)
        outs = [o["scriptPubKey"]["hex"] for o in node._rpc("getrawtransaction", txid, 1)["vout"]]
        coins.append(Utxo(txid, outs.index(output_script(address).hex()), address, amount))
        keys.append(index)
    node.mine(1)  # confirmed: a later faucet never picks the coin it spent again
    to = _external()
    request = rig.payment(coins, keys, to)
    tx = CTransaction.deserialize(
        rig.signer.sign_btc_transaction(_approved(rig, "BTC", PAY, to), rig.wallet, request)
    )
    assert [
        (b2lx(i.prevout.hash), i.prevout.n, i.nSequence, bytes(i.scriptSig)) for i in tx.vin
    ] == [(i.txid, i.vout, i.sequence, b"") for i in request.inputs]
    assert [(bytes(o.scriptPubKey).hex(), o.nValue) for o in tx.vout] == [
        (o.script_pubkey_hex, o.value) for o in request.outputs
    ]
    assert (tx.nVersion, tx.nLockTime) == (request.version, request.locktime)
    (verdict,) = node._rpc("testmempoolaccept", [tx.serialize().hex()], 0)
    assert verdict["allowed"] is True and verdict["txid"] == b2lx(tx.GetTxid())
    # The check is real: each input's witness in the other's place does not verify.
    swapped = CTransaction(
        tx.vin, tx.vout, tx.nLockTime, tx.nVersion, CTxWitness(tx.wit.vtxinwit[::-1])
    )
    (refused,) = node._rpc("testmempoolaccept", [swapped.serialize().hex()], 0)
    assert not refused.get("allowed") and "failed to validate input" in refused["reject-reason"]


def test_an_evm_transaction_is_the_request_signed_by_the_derived_key(rig: Rig) -> None:
    to = str(Account.create().address)
    tx: dict[str, object] = {
        "type": 2,
        "chainId": rig.chain_id,
        "nonce": 0,
        "to": to,
        "value": 12_345,
        "gas": 21_000,
        "maxFeePerGas": 2 * 10**9,
        "maxPriorityFeePerGas": 10**9,
    }
    operation = _approved(rig, "ETH", 12_345, to)
    raw = rig.signer.sign_evm_transaction(operation, rig.wallet, rig.evm_index, tx)
    derived = DERIVER.address(rig.xpub("ethereum"), "ethereum", 0, rig.evm_index)
    assert Account.recover_transaction(raw) == derived
    fields = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
    assert {k: fields[k] for k in tx if k != "to"} == {k: v for k, v in tx.items() if k != "to"}
    assert bytes(fields["to"]) == bytes.fromhex(to[2:]) and bytes(fields["data"]) == b""


def test_a_false_key_or_change_claim_is_refused(rig: Rig) -> None:
    address, index = rig.coin_key()
    to = _external()
    operation = _approved(rig, "BTC", PAY, to)
    request = rig.payment([Utxo(secrets.token_hex(32), 0, address, 90_000)], [index], to)
    wrong_key = request.inputs[0].model_copy(update={"index": index + 1})
    not_change = request.outputs[1].model_copy(
        update={"script_pubkey_hex": output_script(to).hex()}
    )
    for bad in (
        request.model_copy(update={"inputs": [wrong_key]}),
        request.model_copy(update={"outputs": [request.outputs[0], not_change]}),
    ):
        with pytest.raises(KeyAccessDenied):
            rig.signer.sign_btc_transaction(operation, rig.wallet, bad)
    # The refusals are the claims': the true request, for the same operation, is signed.
    signed = CTransaction.deserialize(
        rig.signer.sign_btc_transaction(operation, rig.wallet, request)
    )
    assert [o.nValue for o in signed.vout] == [o.value for o in request.outputs]


def test_a_wallet_the_signer_does_not_hold_is_refused(rig: Rig) -> None:
    """A refusal, not a failure to retry (it was a KeyError: retried 5 times through
    Temporal, then DependencyUnavailable)."""
    address, index = rig.coin_key()
    to = _external()
    operation = _approved(rig, "BTC", PAY, to)
    payment = rig.payment([Utxo(secrets.token_hex(32), 0, address, 90_000)], [index], to)
    with pytest.raises(KeyAccessDenied):
        rig.signer.sign_btc_transaction(operation, "no-such-wallet", payment)
