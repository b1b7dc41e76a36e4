"""Destination checks and bearer tokens, without the stack."""

from __future__ import annotations

from datetime import timedelta

import pytest

from adapters.keys.hd import BipDeriver
from sagas.errors import AddressInvalid, AddressWrongNetwork, Forbidden, Unauthenticated
from services.api.auth import Principal, issue, verify
from services.app.addresses import check_bitcoin, check_ethereum

CHECKSUMMED = "0x52908400098527886E0F7030069857D2E4169EE7"  # EIP-55's own test vector
BC1 = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"  # BIP173 vector (mainnet)
TB1 = "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"  # BIP173 vector (testnet)
P2PKH_MAINNET = "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"


def simnet_address() -> str:
    d = BipDeriver("simnet")
    return d.address(d.account_xpub(d.seed(d.new_mnemonic()), "bitcoin"), "bitcoin", 0, 0)


def test_ethereum_needs_the_eip55_checksum() -> None:
    assert check_ethereum(CHECKSUMMED) == CHECKSUMMED
    with pytest.raises(AddressInvalid, match="checksum"):
        check_ethereum(CHECKSUMMED.lower())
    with pytest.raises(AddressInvalid, match="checksum"):
        check_ethereum(CHECKSUMMED[:-1] + "e")  # one letter's case flipped
    with pytest.raises(AddressInvalid):
        check_ethereum("0x1234")
    with pytest.raises(AddressWrongNetwork):
        check_ethereum(BC1)


def test_bitcoin_needs_the_platform_network() -> None:
    ours = simnet_address()
    assert ours.startswith("sb1") and check_bitcoin(ours, "simnet") == ours
    for other in (BC1, TB1, P2PKH_MAINNET, CHECKSUMMED):
        with pytest.raises(AddressWrongNetwork):
            check_bitcoin(other, "simnet")
    assert check_bitcoin(BC1, "mainnet") == BC1
    broken = BC1[:-1] + ("5" if BC1[-1] != "5" else "6")  # bech32 checksum broken
    for bad in (broken, "sb1qqqq", "not-an-address", ""):
        with pytest.raises(AddressInvalid):
            check_bitcoin(bad, "simnet")


def test_a_token_carries_role_and_client_and_is_checked() -> None:
    secret = b"s" * 32
    token = issue(secret, "alice", "client", "acme")
    who = verify(secret, f"Bearer {token}")
    assert who == Principal(sub="alice", role="client", client_id="acme")
    who.may_see("acme")
    with pytest.raises(Forbidden):
        who.may_see("globex")
    with pytest.raises(Forbidden):
        who.must_be("operator")
    for header in (None, token, "Bearer x.y.z", f"Bearer {issue(b'other' * 8, 'a', 'operator')}"):
        with pytest.raises(Unauthenticated):
            verify(secret, header)
    expired = issue(secret, "bob", "operator", ttl=timedelta(seconds=-5))
    with pytest.raises(Unauthenticated):
        verify(secret, f"Bearer {expired}")
    with pytest.raises(ValueError):
        issue(secret, "carol", "client")  # a client token names its client
