"""Attack 1a: a worker-side Temporal client asks the real signer to sign Bitcoin
transactions an approved withdrawal does not authorise: paying elsewhere, an extra
output, "change" that is not the wallet's internal chain, an overpaid fee, an input
that is not the platform's, an input another operation's signature spent, and a
second payment for the same operation. Each is refused (KeyAccessDenied, CUS-4031),
nothing is recorded in the signer's record, and no platform coin moves on btcd."""

from __future__ import annotations

import uuid

import pytest
from bitcoin.core import Hash160
from bitcoin.wallet import CBech32BitcoinAddress

from adapters.chains.bitcoin.script import output_script
from adapters.chains.bitcoin.tx import Plan, Utxo, to_request, txid
from adapters.temporal.signing import TemporalSigningClient
from sagas.errors import KeyAccessDenied
from sagas.signing import BtcOutput, UnsignedBtcTransaction
from services.settings import PlatformSettings
from tests.integration.test_bitcoin_payouts import World
from tests.redteam.conftest import approve, signatures

BTC = 100_000_000
PAY = BTC // 10
FEE = 1_000


def test_the_signer_signs_only_the_authorised_payment_from_unclaimed_platform_coins(
    stack_settings: PlatformSettings, fresh_postgres_url: str, attacker: TemporalSigningClient
) -> None:
    s, url = stack_settings, fresh_postgres_url
    world = World(s, url)
    _, deposit_address = world.client()
    coins = [world.deposit(deposit_address, BTC // 2) for _ in range(2)]
    keys = world.p.keys
    deposit = keys.lookup(deposit_address)
    assert deposit is not None
    change = keys.assign(
        s.platform_wallet,
        "bitcoin",
        f"{s.platform_wallet}:change:redteam",
        None,
        "BTC",
        lambda i: world.p.deriver.address(
            keys.wallet(s.platform_wallet).xpubs["bitcoin"],  # type: ignore[union-attr]
            "bitcoin",
            1,
            i,
        ),
        change=1,
    )
    destination = world.faucet.address  # an external address the withdrawal pays
    thief = _external()
    operation, other = f"wd-{uuid.uuid4().hex[:8]}", f"wd-{uuid.uuid4().hex[:8]}"
    approve(url, operation, "BTC", "bitcoin", PAY, destination)
    approve(url, other, "BTC", "bitcoin", PAY, destination)

    def utxo(coin: tuple[str, int]) -> Utxo:
        return Utxo(coin[0], coin[1], deposit_address, BTC // 2)

    def request(
        coin: tuple[str, int], pay_to: str = destination, fee: int = FEE
    ) -> UnsignedBtcTransaction:
        plan = Plan((utxo(coin),), ((pay_to, PAY),), BTC // 2 - PAY - fee, fee)
        return to_request(plan, change.address, change.index, [(0, deposit.index)])

    def sign(op: str, tx: UnsignedBtcTransaction) -> bytes:
        return attacker.sign_btc_transaction(op, s.platform_wallet, tx)

    legit = request(coins[0])
    outputs = list(legit.outputs)
    spend_faucet = legit.inputs[0].model_copy(
        update={"script_pubkey_hex": output_script(world.faucet.address).hex()}
    )
    attacks: dict[str, UnsignedBtcTransaction] = {
        "pays elsewhere": request(coins[0], pay_to=thief),
        "an extra output": legit.model_copy(
            update={
                "outputs": [
                    outputs[0],
                    BtcOutput(script_pubkey_hex=output_script(thief).hex(), value=10_000),
                    outputs[1].model_copy(update={"value": outputs[1].value - 10_000}),
                ]
            }
        ),
        "change that is not the internal chain": legit.model_copy(
            update={
                "outputs": [
                    outputs[0],
                    outputs[1].model_copy(update={"script_pubkey_hex": output_script(thief).hex()}),
                ]
            }
        ),
        "change claimed on a client's deposit key": legit.model_copy(
            update={
                "outputs": [
                    outputs[0],
                    outputs[1].model_copy(
                        update={
                            "script_pubkey_hex": output_script(deposit_address).hex(),
                            "change_index": deposit.index,
                        }
                    ),
                ]
            }
        ),
        "two change outputs": legit.model_copy(
            update={
                "outputs": [
                    outputs[0],
                    outputs[1].model_copy(update={"value": outputs[1].value - 10_000}),
                    outputs[1].model_copy(update={"value": 10_000}),
                ]
            }
        ),
        "overpaid fee (no change)": legit.model_copy(update={"outputs": [outputs[0]]}),
        "overpaid fee": request(coins[0], fee=s.signer_max_btc_fee + 1),
        "an input that is not the platform's": legit.model_copy(update={"inputs": [spend_faucet]}),
        "an input with a wrong key claim": legit.model_copy(
            update={"inputs": [legit.inputs[0].model_copy(update={"index": deposit.index + 1})]}
        ),
    }
    for name, tx in attacks.items():
        with pytest.raises(KeyAccessDenied) as refused:
            sign(operation, tx)
        assert refused.value.code == "CUS-4031", name
    assert signatures(url) == 0

    # The authorised payment, from the first coin: signed, and recorded by the signer.
    first = sign(operation, legit)
    assert signatures(url, operation) == 1
    # Signing the same transaction again (a retry whose answer was lost) is harmless.
    assert txid(sign(operation, legit)) == txid(first)
    # Another approved operation spending that coin: refused.
    with pytest.raises(KeyAccessDenied):
        sign(other, request(coins[0]))
    # A second payment of the same operation from another coin (not a replacement of
    # the first, both could confirm): refused.
    with pytest.raises(KeyAccessDenied):
        sign(operation, request(coins[1]))
    # A "fee bump" that pays less fee, or keeps the fee: refused.
    with pytest.raises(KeyAccessDenied):
        sign(operation, request(coins[0], fee=FEE - 1))
    # A real fee bump (same payment, same input, more fee): signed.
    bump = sign(operation, request(coins[0], fee=2 * FEE))
    assert signatures(url, other) == 0

    # No value moved: both platform coins are unspent on chain, the thief got nothing.
    for coin in coins:
        assert world.btc.tx_out(*coin) is not None
    # What the signer signed is valid: the bump confirms, paying exactly the payment.
    paid = world.btc.send_raw(bump)
    world.btc.mine(1)
    out = world.btc.tx_out(paid, 0)
    assert out is not None and round(float(out["value"]) * BTC) == PAY
    assert world.btc.tx_out(*coins[0]) is None and world.btc.tx_out(*coins[1]) is not None


def _external() -> str:
    """A simnet P2WPKH address that is not the platform's (the thief's)."""
    return str(CBech32BitcoinAddress.from_bytes(0, bytes(Hash160(uuid.uuid4().bytes))))
