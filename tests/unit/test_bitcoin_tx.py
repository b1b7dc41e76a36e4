"""Coin selection against the chain's relay rules: each output at least its script's
dust limit (what a node would refuse after we recorded the payment), fees that count
each output at its own size, and every refusal a CannotPay (CUS-4223)."""

from __future__ import annotations

from collections.abc import Iterator

import bitcoin
import pytest
from bip_utils import SegwitBech32Encoder

from adapters.chains.bitcoin.networks import select_network
from adapters.chains.bitcoin.script import dust_limit, output_script
from adapters.chains.bitcoin.tx import InsufficientCoins, Utxo, select
from sagas.errors import CannotPay

KEY = bytes.fromhex("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
P2WPKH = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
P2WSH = "bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3"
P2TR = "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0"
P2PKH = "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"
P2SH = "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"
DUST = {P2WPKH: 294, P2WSH: 330, P2TR: 330, P2SH: 540, P2PKH: 546}  # Bitcoin Core's
COINS = [Utxo("aa" * 32, 0, P2WPKH, 100_000)]


@pytest.fixture(autouse=True)
def mainnet() -> Iterator[None]:
    saved = bitcoin.params
    select_network("mainnet")
    yield
    bitcoin.params = saved


@pytest.mark.parametrize(("address", "limit"), DUST.items())
def test_each_output_must_reach_its_scripts_dust_limit(address: str, limit: int) -> None:
    assert dust_limit(output_script(address)) == limit
    plan = select(COINS, [(address, limit)], fee_rate=2)
    assert plan.outputs == ((address, limit),)
    with pytest.raises(CannotPay, match="dust"):
        select(COINS, [(address, limit - 1)], fee_rate=2)


def test_the_fee_counts_each_output_at_its_own_size() -> None:
    to_p2wpkh = select(COINS, [(P2WPKH, 10_000)], fee_rate=10)
    to_p2tr = select(COINS, [(P2TR, 10_000)], fee_rate=10)
    assert to_p2tr.fee - to_p2wpkh.fee == (43 - 31) * 10  # OP_1 <32> vs OP_0 <20>


def test_what_cannot_be_paid_is_cannot_pay() -> None:
    with pytest.raises(InsufficientCoins) as short:
        select(COINS, [(P2TR, 200_000)], fee_rate=2)
    assert isinstance(short.value, CannotPay) and short.value.code == "CUS-4223"
    assert not short.value.transient
    for outputs in ([], [(SegwitBech32Encoder.Encode("bc", 2, KEY), 10_000)]):
        with pytest.raises(CannotPay):
            select(COINS, outputs, fee_rate=2)
