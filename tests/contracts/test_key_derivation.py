"""KeyDerivation contract: adapters/keys/hd.py BipDeriver on each Bitcoin network it
supports (mainnet, testnet, regtest, simnet). The port has no fake.

Checked against published vectors: BIP39 seeds of 'abandon ... about' (without and with
the passphrase TREZOR); BIP84 (mainnet zpub, receive and change addresses, public and
private keys; the m/84'/1'/0' vpub and first address, carried by each test network's
bech32 HRP); the BIP44 coin-60 accounts every Ethereum dev tool derives. Checked with
other libraries: fresh mnemonics are 24 words with a valid BIP39 checksum whose seed is
PBKDF2 of the words; account keys are SLIP-132 extended keys at depth 3 of the account;
public derivation from the xpub gives the private key's public key (BIP32 CKDpub =
CKDpriv) for both chains, changes, two accounts and a spread of indices; each address is
its key's P2WPKH (hash160, witness v0, the network's HRP) or EIP-55 Keccak address.
BIP32's own vectors use paths the port cannot name (tests/unit/test_hd_vectors.py).
No secret is printed: assertions compare public values, counts or booleans only."""

from __future__ import annotations

import hashlib
import unicodedata
from importlib.resources import files

import coincurve
import pytest
from bip_utils import Base58Decoder
from bitcoin import segwit_addr
from bitcoin.core import Hash160
from eth_utils.address import is_checksum_address, to_checksum_address
from eth_utils.crypto import keccak

from adapters.keys.hd import BipDeriver
from sagas.keys import CHAINS, Chain
from sagas.ports import KeyDerivation

ABANDON = "abandon " * 11 + "about"
JUNK = "test " * 11 + "junk"
HRP = {"mainnet": "bc", "testnet": "tb", "regtest": "bcrt", "simnet": "sb"}
# SLIP-132 versions: zpub on mainnet, vpub on the networks of coin type 1; xpub for ETH.
VERSION = dict.fromkeys(("testnet", "regtest", "simnet"), "045f1cf6") | {"mainnet": "04b24746"}
ZPUB = "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs"  # noqa: E501
VPUB = "vpub5Y6cjg78GGuNLsaPhmYsiw4gYX3HoQiRBiSwDaBXKUafCt9bNwWQiitDk5VZ5BVxYnQdwoTyXSs2JHRPAgjAvtbBrf8ZhDYe2jWAqvZVnsc"  # noqa: E501
WORDS = (files("bip_utils") / "bip/bip39/wordlist/english.txt").read_text().split()
INDEX = {word: n for n, word in enumerate(WORDS)}
PATHS = [(c, i) for c in (0, 1) for i in (0, 1, 7, 2**31 - 1)]


@pytest.fixture(params=sorted(HRP))
def deriver(request: pytest.FixtureRequest) -> KeyDerivation:
    return BipDeriver(request.param)


def test_is_the_port_on_its_network(deriver: KeyDerivation, request: pytest.FixtureRequest) -> None:
    assert isinstance(deriver, KeyDerivation)
    assert deriver.btc_network == request.node.callspec.params["deriver"]


def test_new_mnemonics_are_fresh_24_word_bip39_phrases(deriver: KeyDerivation) -> None:
    phrases = [deriver.new_mnemonic() for _ in range(8)]
    distinct, lengths = len(set(phrases)), {len(p.split()) for p in phrases}
    valid = all(_checksum_ok(p) for p in phrases)
    seeds_ok = all(deriver.seed(p, "pw") == _pbkdf2(p, "pw") for p in phrases)
    assert (distinct, lengths, valid, seeds_ok) == (8, {24}, True, True)


def test_bip39_seed_vectors(deriver: KeyDerivation) -> None:
    assert deriver.seed(ABANDON).hex() == (
        "5eb00bbddcf069084889a8ab9155568165f5c453ccb85e70811aaed6f6da5fc1"
        "9a5ac40b389cd370d086206dec8aa6c43daea6690f20ad3d8d48b2d2ce9e38e4"
    )
    assert deriver.seed(ABANDON, "TREZOR").hex() == (
        "c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e5349553"
        "1f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04"
    )


@pytest.mark.parametrize("bad", ["abandon " * 11 + "abandon", "abandon " * 11 + "zzzz", ""])
def test_an_invalid_mnemonic_is_a_value_error(deriver: KeyDerivation, bad: str) -> None:
    with pytest.raises(ValueError):
        deriver.seed(bad)


def test_bip84_vectors_on_the_network(deriver: KeyDerivation) -> None:
    seed, hrp = deriver.seed(ABANDON), HRP[deriver.btc_network]
    xpub = deriver.account_xpub(seed, "bitcoin")
    receive = [deriver.address(xpub, "bitcoin", 0, i) for i in (0, 1)]
    if deriver.btc_network == "mainnet":
        assert xpub == ZPUB
        assert receive == [
            "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu",
            "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g",
        ]
        assert deriver.address(xpub, "bitcoin", 1, 0) == (
            "bc1q8c6fshw2dlwun7ekn9qwf37cu2rn755upcp6el"
        )
        assert deriver.public_key(xpub, "bitcoin", 1, 0).hex() == (
            "03025324888e429ab8e3dbaf1f7802648b9cd01e9b418485c5fa4c1b9b5700e1a6"
        )
        assert deriver.private_key(seed, "bitcoin", 0, 0).hex() == (
            "4604b4b710fe91f584fff084e1a9159fe4f8408fff380596a604948474ce4fa3"
        )
    else:  # coin type 1: the testnet vector, under this network's HRP
        _, program = segwit_addr.decode("tb", "tb1q6rz28mcfaxtmd6v789l9rrlrusdprr9pqcpvkl")
        assert xpub == VPUB
        assert receive[0] == segwit_addr.encode(hrp, 0, program)
    assert receive[0] != receive[1]


def test_bip44_ethereum_vectors_on_every_network(deriver: KeyDerivation) -> None:
    seed = deriver.seed(JUNK)
    xpub = deriver.account_xpub(seed, "ethereum")
    assert [deriver.address(xpub, "ethereum", 0, i) for i in range(2)] == [
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    ]
    assert [deriver.private_key(seed, "ethereum", 0, i).hex() for i in range(2)] == [
        "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
        "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    ]
    abandon = deriver.account_xpub(deriver.seed(ABANDON), "ethereum")
    assert deriver.address(abandon, "ethereum", 0, 0) == (
        "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"
    )


@pytest.mark.parametrize("account", [0, 1])
def test_account_keys_are_slip132_keys_of_the_account(deriver: KeyDerivation, account: int) -> None:
    seed = deriver.seed(ABANDON)
    versions: dict[Chain, str] = {"bitcoin": VERSION[deriver.btc_network], "ethereum": "0488b21e"}
    for chain, version in versions.items():
        raw = Base58Decoder.CheckDecode(deriver.account_xpub(seed, chain, account))
        assert (raw[:4].hex(), raw[4], raw[9:13].hex()) == (
            version,
            3,
            f"{0x80000000 + account:08x}",
        )


def test_public_derivation_from_the_xpub_is_the_private_derivation(
    deriver: KeyDerivation,
) -> None:
    seed = deriver.seed(deriver.new_mnemonic())
    wrong = []  # paths only: public information
    for chain in CHAINS:
        for account in (0, 1):
            xpub = deriver.account_xpub(seed, chain, account)
            for change, index in PATHS:
                secret = deriver.private_key(seed, chain, change, index, account)
                from_seed = coincurve.PublicKey.from_secret(secret).format(compressed=True)
                if from_seed != deriver.public_key(xpub, chain, change, index):
                    wrong.append((chain, account, change, index))
    default = deriver.private_key(seed, "ethereum", 1, 7) == deriver.private_key(
        seed, "ethereum", 1, 7, account=0
    )
    assert (wrong, default) == ([], True)


def test_each_address_is_its_public_key_in_the_chains_format(deriver: KeyDerivation) -> None:
    xpubs = {c: deriver.account_xpub(deriver.seed(ABANDON, "contract"), c) for c in CHAINS}
    seen = set()
    for change, index in PATHS:
        pub = deriver.public_key(xpubs["bitcoin"], "bitcoin", change, index)
        btc = deriver.address(xpubs["bitcoin"], "bitcoin", change, index)
        assert segwit_addr.decode(HRP[deriver.btc_network], btc) == (0, list(Hash160(pub)))
        pub = deriver.public_key(xpubs["ethereum"], "ethereum", change, index)
        eth = deriver.address(xpubs["ethereum"], "ethereum", change, index)
        uncompressed = coincurve.PublicKey(pub).format(compressed=False)
        assert is_checksum_address(eth)
        assert eth == to_checksum_address(keccak(uncompressed[1:])[-20:])
        assert len(pub) == 33 and pub[0] in (2, 3)
        seen |= {btc, eth}
    assert len(seen) == 2 * len(PATHS)


def _checksum_ok(phrase: str) -> bool:
    """BIP39: 24 words of 11 bits are 256 bits of entropy and its SHA-256's first byte."""
    if len(WORDS) != 2048 or any(w not in INDEX for w in phrase.split()):
        return False
    bits = "".join(f"{INDEX[w]:011b}" for w in phrase.split())
    entropy = int(bits[:256], 2).to_bytes(32, "big")
    return bits[256:] == f"{hashlib.sha256(entropy).digest()[0]:08b}"


def _pbkdf2(phrase: str, passphrase: str) -> bytes:
    words, salt = (unicodedata.normalize("NFKD", s).encode() for s in (phrase, passphrase))
    return hashlib.pbkdf2_hmac("sha512", words, b"mnemonic" + salt, 2048)
