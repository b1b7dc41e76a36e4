from __future__ import annotations

import secrets
from collections.abc import Iterator

import bitcoin
import pytest
from bitcoin.core import Hash160
from bitcoin.core.script import CScript
from bitcoin.wallet import CBitcoinAddress, CBitcoinSecret, P2WPKHBitcoinAddress

from adapters.chains.bitcoin.networks import select_network


@pytest.fixture(autouse=True)
def _restore_params() -> Iterator[None]:
    saved = bitcoin.params
    yield
    bitcoin.params = saved


def _p2wpkh(key: CBitcoinSecret) -> str:
    return str(P2WPKHBitcoinAddress.from_scriptPubKey(CScript([0, Hash160(key.pub)])))


@pytest.mark.parametrize(
    ("network", "hrp"),
    [("simnet", "sb1q"), ("regtest", "bcrt1q"), ("mainnet", "bc1q"), ("testnet", "tb1q")],
)
def test_p2wpkh_addresses_carry_the_network_prefix(network: str, hrp: str) -> None:
    select_network(network)
    key = CBitcoinSecret.from_secret_bytes(secrets.token_bytes(32))
    address = _p2wpkh(key)
    assert address.startswith(hrp)
    assert str(CBitcoinAddress(address)) == address


def test_simnet_wif_round_trips_with_its_own_prefix() -> None:
    select_network("simnet")
    key = CBitcoinSecret.from_secret_bytes(b"\x01" * 32)
    assert bytes(CBitcoinSecret(str(key)))[:32] == b"\x01" * 32
    select_network("regtest")
    with pytest.raises(Exception):  # noqa: B017 - a simnet WIF is not a regtest WIF
        CBitcoinSecret(str(key))


def test_unknown_network_is_refused() -> None:
    with pytest.raises(ValueError, match="litecoin"):
        select_network("litecoin")
