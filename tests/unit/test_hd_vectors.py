"""Derivation against the official vectors: BIP32 test vector 1, BIP84, and the Ethereum
HD accounts every Ethereum dev tool derives from the 'test ... junk' mnemonic."""

from __future__ import annotations

import pytest
from bip_utils import Bip32Slip10Secp256k1

from adapters.keys.hd import BipDeriver

BIP84_MNEMONIC = "abandon " * 11 + "about"
ETH_MNEMONIC = "test test test test test test test test test test test junk"


def test_bip32_test_vector_1() -> None:
    # https://github.com/bitcoin/bips/blob/master/bip-0032.mediawiki#test-vector-1
    master = Bip32Slip10Secp256k1.FromSeed(bytes.fromhex("000102030405060708090a0b0c0d0e0f"))
    assert master.PublicKey().ToExtended() == (
        "xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqsefD2"
        "65TMg7usUDFdp6W1EGMcet8"
    )
    leaf = master.DerivePath("m/0'/1/2'/2/1000000000")
    assert leaf.PublicKey().ToExtended() == (
        "xpub6H1LXWLaKsWFhvm6RVpEL9P4KfRZSW7abD2ttkWP3SSQvnyA8FSVqNTEcYFgJS2UaFcxupHiYkro49S8yGas"
        "TvXEYBVPamhGW6cFJodrTHy"
    )
    assert leaf.PrivateKey().ToExtended() == (
        "xprvA41z7zogVVwxVSgdKUHDy1SKmdb533PjDz7J6N6mV6uS3ze1ai8FHa8kmHScGpWmj4WggLyQjgPie1rFSruo"
        "UihUZREPSL39UNdE3BBDu76"
    )


def test_bip84_vectors() -> None:
    # https://github.com/bitcoin/bips/blob/master/bip-0084.mediawiki#test-vectors
    deriver = BipDeriver("mainnet")
    seed = deriver.seed(BIP84_MNEMONIC)
    xpub = deriver.account_xpub(seed, "bitcoin")
    assert xpub == (
        "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgD"
        "Kf31mGDtKsAYz2oz2AGutZYs"
    )
    assert deriver.address(xpub, "bitcoin", 0, 0) == "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
    assert deriver.address(xpub, "bitcoin", 0, 1) == "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g"
    assert deriver.address(xpub, "bitcoin", 1, 0) == "bc1q8c6fshw2dlwun7ekn9qwf37cu2rn755upcp6el"
    assert deriver.private_key(seed, "bitcoin", 0, 0).hex() == (
        # WIF KyZpNDKnfs94vbrwhJneDi77V6jF64PWPF8x5cdJb8ifgg2DUc9d of m/84'/0'/0'/0/0
        "4604b4b710fe91f584fff084e1a9159fe4f8408fff380596a604948474ce4fa3"
    )


def test_ethereum_hd_accounts() -> None:
    deriver = BipDeriver("simnet")
    seed = deriver.seed(ETH_MNEMONIC)
    xpub = deriver.account_xpub(seed, "ethereum")
    assert [deriver.address(xpub, "ethereum", 0, i) for i in range(3)] == [
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    ]
    assert deriver.private_key(seed, "ethereum", 0, 0).hex() == (
        "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
    )


@pytest.mark.parametrize(
    ("network", "prefix"),
    [("simnet", "sb1q"), ("regtest", "bcrt1q"), ("testnet", "tb1q"), ("mainnet", "bc1q")],
)
def test_bitcoin_addresses_carry_their_network(network: str, prefix: str) -> None:
    deriver = BipDeriver(network)
    seed = deriver.seed(BIP84_MNEMONIC)
    assert deriver.address(deriver.account_xpub(seed, "bitcoin"), "bitcoin", 0, 0).startswith(
        prefix
    )


def test_new_mnemonics_are_24_fresh_words() -> None:
    words = {BipDeriver.new_mnemonic() for _ in range(20)}
    assert len(words) == 20 and all(len(m.split()) == 24 for m in words)
    assert all(len(BipDeriver.seed(m)) == 64 for m in list(words)[:3])


def test_an_invalid_mnemonic_is_refused() -> None:
    with pytest.raises(ValueError, match="BIP39"):
        BipDeriver.seed("abandon " * 12)


def test_cosmos_accounts_are_bip44_coin_118() -> None:
    # The address cosmjs and Keplr derive at m/44'/118'/0'/0/0 from the 'abandon ...
    # about' mnemonic; cosmpy's own address encoding of the private key's public key
    # agrees, so the xpub path (no secret) and the signer's path (the seed) meet.
    from cosmpy.crypto.address import Address
    from cosmpy.crypto.keypairs import PrivateKey

    deriver = BipDeriver("simnet")
    seed = deriver.seed(BIP84_MNEMONIC)
    xpub = deriver.account_xpub(seed, "cosmos")
    assert deriver.address(xpub, "cosmos", 0, 0) == "cosmos19rl4cm2hmr8afy4kldpxz3fka4jguq0auqdal4"
    for index in (0, 1, 7):
        key = PrivateKey(deriver.private_key(seed, "cosmos", 0, index))
        assert str(Address(key.public_key, "cosmos")) == deriver.address(xpub, "cosmos", 0, index)
        assert key.public_key.public_key_bytes == deriver.public_key(xpub, "cosmos", 0, index)
    # Another chain's prefix, the same key.
    other = BipDeriver("simnet", cosmos_prefix="osmo")
    assert other.address(xpub, "cosmos", 0, 0).startswith("osmo1")
    with pytest.raises(ValueError):
        BipDeriver("simnet", cosmos_prefix="Cosmos!")
