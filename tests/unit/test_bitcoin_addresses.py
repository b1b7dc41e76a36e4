"""Bitcoin destinations against the BIP350 test vectors: P2WPKH, P2WSH and P2TR are
accepted and paid with the right output script; bech32 where bech32m is due (and the
reverse), witness versions 2-16 and wrong program lengths are refused (CUS-3002 at the
API, CUS-4223 in the sender). Screening names a taproot source by its address."""

from __future__ import annotations

from collections.abc import Iterator

import bitcoin
import pytest
from bip_utils import SegwitBech32Encoder
from bitcoin import segwit_addr
from bitcoin.core import CMutableTransaction, CMutableTxIn, CMutableTxOut, COutPoint, b2lx
from bitcoin.core.script import CScript

from adapters.chains.bitcoin.networks import select_network
from adapters.chains.bitcoin.script import address_of_script, output_script
from adapters.operations.screening import DenyListScreening
from sagas.errors import AddressInvalid, AddressWrongNetwork, CannotPay
from services.app.addresses import check_bitcoin

# BIP350 "valid segwit addresses" that the platform pays, with their scriptPubKeys.
PAYABLE = [
    ("mainnet", "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4",
     "0014751e76e8199196d454941c45d1b3a323f1433bd6"),
    ("testnet", "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
     "00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262"),
    ("testnet", "tb1qqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesrxh6hy",
     "0020000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433"),
    ("testnet", "tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c",
     "5120000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433"),
    ("mainnet", "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
     "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"),
]  # fmt: skip

# BIP350 valid strings no consensus rule protects yet (anyone can spend): never paid.
UNPROTECTED = [
    ("mainnet", "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y"),
    ("mainnet", "BC1SW50QGDZ25J"),  # version 16, 2 bytes
    ("mainnet", "bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs"),  # version 2, 16 bytes
]

# BIP350 "invalid segwit addresses".
INVALID = [
    "tc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq5zuyut",  # unknown HRP
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd",  # bech32, not bech32m
    "tb1z0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqglt7rf",  # bech32, not bech32m
    "BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL",  # bech32, not bech32m
    "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh",  # v0 with bech32m
    "tb1q0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq24jc47",  # v0 with bech32m
    "bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4",  # bad character
    "BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R",  # version 17
    "bc1pw5dgrnzv",  # program of 1 byte
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v8n0nx0muaewav253zgeav",  # 41 bytes
    "BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P",  # v0 of 16 bytes
    "tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq47Zagq",  # mixed case
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v07qwwzcrf",  # padding > 4 bits
    "tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vpggkg4j",  # non-zero padding
    "bc1gmk9yu",  # empty data
]

NETWORK_OF = {"bc": "mainnet", "tb": "testnet"}
KEY = bytes.fromhex("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")


@pytest.fixture
def network() -> Iterator[None]:
    saved = bitcoin.params
    yield
    bitcoin.params = saved


@pytest.mark.parametrize(("net", "address", "script"), PAYABLE)
def test_p2wpkh_p2wsh_and_p2tr_are_accepted_and_paid_with_their_script(
    net: str, address: str, script: str, network: None
) -> None:
    assert check_bitcoin(address, net) == address
    select_network(net)
    assert output_script(address).hex() == script
    with pytest.raises(AddressWrongNetwork):
        check_bitcoin(address, "simnet")


@pytest.mark.parametrize(("net", "address"), UNPROTECTED)
def test_unknown_witness_versions_and_lengths_are_refused(
    net: str, address: str, network: None
) -> None:
    with pytest.raises(AddressInvalid) as refused:
        check_bitcoin(address, net)
    assert refused.value.code == "CUS-3002"
    select_network(net)
    with pytest.raises(CannotPay):
        output_script(address)


@pytest.mark.parametrize("address", INVALID)
def test_bip350_invalid_addresses_are_refused(address: str, network: None) -> None:
    net = NETWORK_OF.get(address[:2].lower(), "mainnet")
    with pytest.raises(AddressInvalid) as refused:
        check_bitcoin(address, net)
    assert refused.value.code == "CUS-3002"
    select_network(net)
    with pytest.raises(CannotPay):
        output_script(address)


def test_a_simnet_taproot_address_and_its_wrong_encodings(network: None) -> None:
    taproot = SegwitBech32Encoder.Encode("sb", 1, KEY)
    assert taproot.startswith("sb1p") and check_bitcoin(taproot, "simnet") == taproot
    select_network("simnet")
    assert output_script(taproot) == bytes([0x51, 32]) + KEY  # OP_1 <32 bytes>
    with pytest.raises(AddressWrongNetwork):
        check_bitcoin(taproot, "mainnet")
    as_bech32 = segwit_addr.encode("sb", 1, KEY)  # BIP173 checksum on version 1
    assert as_bech32 is not None and as_bech32 != taproot
    for bad in (
        as_bech32,
        SegwitBech32Encoder.Encode("sb", 1, KEY[:20]),  # v1 of 20 bytes
        SegwitBech32Encoder.Encode("sb", 2, KEY),  # v2
        SegwitBech32Encoder.Encode("sb", 16, KEY),  # v16
    ):
        with pytest.raises(AddressInvalid):
            check_bitcoin(bad, "simnet")
        with pytest.raises(CannotPay):
            output_script(bad)


@pytest.mark.parametrize(("net", "address", "script"), PAYABLE)
def test_an_output_script_names_its_address_back(
    net: str, address: str, script: str, network: None
) -> None:
    select_network(net)
    assert address_of_script(bytes.fromhex(script)) == address.lower()


class _Node:
    """Just enough of btcd for screening: raw transactions by id."""

    def __init__(self, *txs: CMutableTransaction) -> None:
        self._raw = {b2lx(tx.GetTxid()): tx.serialize().hex() for tx in txs}

    def _rpc(self, method: str, txid: str, verbose: int) -> str:
        assert (method, verbose) == ("getrawtransaction", 0)
        return self._raw[txid]


def test_a_deposit_from_a_denied_taproot_address_is_caught(network: None) -> None:
    select_network("simnet")
    taproot = SegwitBech32Encoder.Encode("sb", 1, KEY)
    funding = CMutableTransaction(
        [CMutableTxIn(COutPoint(b"\x11" * 32, 0))],
        [CMutableTxOut(50_000, CScript(output_script(taproot)))],
    )
    deposit = CMutableTransaction(
        [CMutableTxIn(COutPoint(funding.GetTxid(), 0))],
        [CMutableTxOut(40_000, CScript(bytes([0, 20]) + KEY[:20]))],
    )
    node = _Node(funding, deposit)
    screening = DenyListScreening(None, node, deny=[taproot], btc_network="simnet")  # type: ignore[arg-type]
    sources = screening.sources("bitcoin", b2lx(deposit.GetTxid()))
    assert sources == [taproot]
    assert screening.check("bitcoin", sources) == f"source {taproot} is on the deny list"
