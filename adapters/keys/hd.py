"""HD key derivation with bip-utils (BIP39 seeds, BIP32, BIP84 for Bitcoin, BIP44 coin 60
for Ethereum, BIP44 coin 118 for Cosmos). No curve math here: the library does it, and
the official test vectors check it (tests/unit/test_hd_vectors.py)."""

from __future__ import annotations

import re

from bip_utils import (
    Bip39MnemonicGenerator,
    Bip39MnemonicValidator,
    Bip39SeedGenerator,
    Bip39WordsNum,
    Bip44,
    Bip44Changes,
    Bip44Coins,
    Bip84,
    Bip84Coins,
    P2WPKHAddrEncoder,
)
from bip_utils.addr.atom_addr import AtomAddrEncoder

from sagas.keys import Chain

_BIP44 = {"ethereum": Bip44Coins.ETHEREUM, "cosmos": Bip44Coins.COSMOS}

# Bitcoin network -> (BIP84 coin: xpub versions and coin type, bech32 HRP).
# Simnet shares testnet's coin type 1 and key versions; only its HRP differs.
_BTC_NETWORKS = {
    "mainnet": (Bip84Coins.BITCOIN, "bc"),
    "testnet": (Bip84Coins.BITCOIN_TESTNET, "tb"),
    "regtest": (Bip84Coins.BITCOIN_REGTEST, "bcrt"),
    "simnet": (Bip84Coins.BITCOIN_TESTNET, "sb"),
}


# A Cosmos SDK chain's account addresses: bech32 with the chain's prefix (`cosmos` for the
# Hub and the stack's simd), over RIPEMD160(SHA256(compressed secp256k1 key)).
_COSMOS_PREFIX = re.compile(r"[a-z]{1,20}")


class BipDeriver:
    def __init__(self, btc_network: str, cosmos_prefix: str = "cosmos") -> None:
        if btc_network not in _BTC_NETWORKS:
            raise ValueError(f"unknown bitcoin network {btc_network!r}")
        if not _COSMOS_PREFIX.fullmatch(cosmos_prefix):
            raise ValueError(f"not a bech32 account prefix: {cosmos_prefix!r}")
        self.btc_network = btc_network
        self.cosmos_prefix = cosmos_prefix
        self._btc_coin, self._hrp = _BTC_NETWORKS[btc_network]

    def __repr__(self) -> str:
        return f"BipDeriver(btc_network={self.btc_network!r})"

    @staticmethod
    def new_mnemonic() -> str:
        """24 words (256 bits of entropy from the OS CSPRNG)."""
        return str(Bip39MnemonicGenerator().FromWordsNumber(Bip39WordsNum.WORDS_NUM_24).ToStr())

    @staticmethod
    def seed(mnemonic: str, passphrase: str = "") -> bytes:
        if not Bip39MnemonicValidator().IsValid(mnemonic):
            raise ValueError("not a valid BIP39 mnemonic")
        return bytes(Bip39SeedGenerator(mnemonic).Generate(passphrase))

    def _account(self, seed: bytes, chain: Chain, account: int):  # type: ignore[no-untyped-def]
        if chain == "bitcoin":
            return Bip84.FromSeed(seed, self._btc_coin).Purpose().Coin().Account(account)
        return Bip44.FromSeed(seed, _BIP44[chain]).Purpose().Coin().Account(account)

    def account_xpub(self, seed: bytes, chain: Chain, account: int = 0) -> str:
        """The account-level extended public key (zpub/vpub for BTC, xpub for ETH)."""
        return str(self._account(seed, chain, account).PublicKey().ToExtended())

    def _leaf(self, xpub: str, chain: Chain, change: int, index: int):  # type: ignore[no-untyped-def]
        if chain == "bitcoin":
            node = Bip84.FromExtendedKey(xpub, self._btc_coin)
        else:
            node = Bip44.FromExtendedKey(xpub, _BIP44[chain])
        return node.Change(Bip44Changes(change)).AddressIndex(index)

    def public_key(self, xpub: str, chain: Chain, change: int, index: int) -> bytes:
        """The compressed public key below an account xpub."""
        return bytes(self._leaf(xpub, chain, change, index).PublicKey().RawCompressed().ToBytes())

    def address(self, xpub: str, chain: Chain, change: int, index: int) -> str:
        """The address at change/index below an account xpub: no secret involved."""
        leaf = self._leaf(xpub, chain, change, index)
        if chain == "ethereum":
            return str(leaf.PublicKey().ToAddress())
        pub = leaf.PublicKey().RawCompressed().ToBytes()
        if chain == "cosmos":
            return cosmos_address(pub, self.cosmos_prefix)
        return str(P2WPKHAddrEncoder.EncodeKey(pub, hrp=self._hrp, wit_ver=0))

    def private_key(
        self, seed: bytes, chain: Chain, change: int, index: int, account: int = 0
    ) -> bytes:
        """The raw 32-byte private key at the path. For the signer only."""
        leaf = self._account(seed, chain, account).Change(Bip44Changes(change)).AddressIndex(index)
        return bytes(leaf.PrivateKey().Raw().ToBytes())


def cosmos_address(public_key: bytes, prefix: str = "cosmos") -> str:
    """The Cosmos SDK account address of a 33-byte compressed secp256k1 public key."""
    return str(AtomAddrEncoder.EncodeKey(public_key, hrp=prefix))
