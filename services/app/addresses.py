"""Destination checks: a checksummed Ethereum address, a Bitcoin address of the
platform's own network, or a Cosmos account address with the chain's prefix. An address
valid on another network is refused with its own code (CUS-3003), so a bank can tell a
typo from a mainnet address sent to a test platform. Pure functions: no global network
state is touched."""

from __future__ import annotations

import hashlib

import bech32
from bitcoin import base58
from eth_utils.address import is_address, is_checksum_address

from adapters.chains.bitcoin.script import decode_segwit, payable_witness
from sagas.errors import AddressInvalid, AddressWrongNetwork

# (bech32 HRP, base58 P2PKH version, base58 P2SH version) per network.
BTC_NETWORKS = {
    "mainnet": ("bc", 0x00, 0x05),
    "testnet": ("tb", 0x6F, 0xC4),
    "regtest": ("bcrt", 0x6F, 0xC4),
    "simnet": ("sb", 0x3F, 0x7B),
}


def check_ethereum(address: str) -> str:
    if not is_address(address):
        if _bitcoin_network(address) is not None:
            raise AddressWrongNetwork(f"{address} is a Bitcoin address")
        raise AddressInvalid(f"{address} is not an Ethereum address")
    if not is_checksum_address(address):
        raise AddressInvalid(f"{address} is not in EIP-55 checksum form (or its checksum is wrong)")
    return address


def _bitcoin_network(address: str) -> set[str] | None:
    """The networks an address is valid on, or None if it is not a valid address at all."""
    lowered = address.lower()
    if "1" in lowered:
        hrp = lowered.rsplit("1", 1)[0]
        found = {
            name
            for name, (net_hrp, _, _) in BTC_NETWORKS.items()
            if net_hrp == hrp and _payable_segwit(address, hrp)
        }
        if found:
            return found
    try:
        raw = base58.decode(address)
    except (base58.Base58Error, ValueError):
        return None
    if len(raw) != 25 or hashlib.sha256(hashlib.sha256(raw[:-4]).digest()).digest()[:4] != raw[-4:]:
        return None
    found = {name for name, (_, p2pkh, p2sh) in BTC_NETWORKS.items() if raw[0] in (p2pkh, p2sh)}
    return found or None


def _payable_segwit(address: str, hrp: str) -> bool:
    # BIP350: bech32 for version 0, bech32m above; only the versions and program lengths
    # a consensus rule protects (P2WPKH, P2WSH, P2TR): others are anyone-can-spend.
    decoded = decode_segwit(address, hrp)
    return decoded is not None and payable_witness(*decoded)


def check_bitcoin(address: str, network: str) -> str:
    valid_on = _bitcoin_network(address)
    if valid_on is None:
        if is_address(address):
            raise AddressWrongNetwork(f"{address} is an Ethereum address")
        raise AddressInvalid(f"{address} is not a Bitcoin address")
    if network not in valid_on:
        raise AddressWrongNetwork(f"{address} is for {', '.join(sorted(valid_on))}, not {network}")
    return address


def check_cosmos(address: str, prefix: str) -> str:
    """A Cosmos SDK account address of this chain: bech32 (lower case) with the account
    prefix and a 20-byte key hash or a 32-byte module or contract account. A validator's
    operator address, or another chain's account, is another network's (CUS-3003)."""
    hrp, words = bech32.bech32_decode(address)
    data = None if words is None else bech32.convertbits(words, 5, 8, False)
    if hrp is None or data is None or len(data) not in (20, 32):
        if _bitcoin_network(address) is not None:
            raise AddressWrongNetwork(f"{address} is a Bitcoin address")
        if is_address(address):
            raise AddressWrongNetwork(f"{address} is an Ethereum address")
        raise AddressInvalid(f"{address} is not a Cosmos account address")
    if hrp != prefix:
        if hrp.startswith(prefix):  # cosmosvaloper, cosmosvalcons: not an account
            raise AddressWrongNetwork(f"{address} is a validator's address, not an account")
        raise AddressWrongNetwork(f"{address} is an address of another chain ({hrp}1...)")
    return address.lower()  # bech32 is one case: the lower is the chain's own form
