"""Withdrawals that would burn or loop money, and the smallest amount worth sending.

Checked after the destination's format (services/app/addresses.py) and before the
balance, so a refused withdrawal writes nothing:

- CUS-3011 for a destination whose coins nobody can spend (the zero address, the
  reserved low range holding the precompiles and the common 0x...dEaD burn address,
  the token contract itself), or one of the platform's own addresses (the hot wallet,
  any deposit, settlement or change address in `deposit_addresses`): paying those on
  chain only costs a fee; a transfer between clients is a ledger transfer.
- CUS-3012 for an amount under the asset's minimum withdrawal, which for BTC is never
  below the dust limit of the destination's script type (the chain would not relay it).

Pure functions: the caller passes the platform's address book, its token contracts
and the configured minimum.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

from bitcoin import base58

from adapters.chains.bitcoin.script import decode_segwit, witness_script
from sagas.errors import AmountBelowMinimum, DestinationRefused
from sagas.keys import AddressAssignment, Chain
from sagas.ledger import Asset
from sagas.money import format_units
from services.app.addresses import BTC_NETWORKS

# 0x0000...0000 to 0x0000...ffff: the zero address, the precompiles (0x01-0x11 on
# Ethereum today, 0x100 for RIP-7212 on rollups, more to come in the low range) and
# 0x...dEaD. A real key or contract lands there with probability 2^-144.
RESERVED_MAX = 0xFFFF

# Bitcoin Core's dust rule: an output is dust if spending it costs more than it holds
# at the dust relay fee (3 sat/vB), counting the input that will spend it (67 vbytes
# for a witness program, 148 otherwise).
DUST_RELAY_FEE = 3  # sat/vB


def ethereum_refusal(address: str, tokens: Iterable[str]) -> str | None:
    """Why an Ethereum destination burns what is sent to it, or None. `address` is a
    well-formed address; `tokens` are the ERC-20 contracts the platform pays out."""
    value = int(address, 16)
    if value == 0:
        return f"{address} is the zero address: what is sent there is burnt"
    if value <= RESERVED_MAX:
        return (
            f"{address} is in the reserved range 0x...0001-0x...ffff (precompiles, burn "
            "addresses): what is sent there is lost"
        )
    if any(token and token.lower() == address.lower() for token in tokens):
        return f"{address} is the token contract itself: what is sent there is lost"
    return None


def bitcoin_script(address: str, network: str) -> tuple[int, bool]:
    """(length of the output script, whether it is a witness program) of a Bitcoin
    address already checked for `network`."""
    hrp, p2pkh, p2sh = BTC_NETWORKS[network]
    try:
        raw = base58.decode(address)
    except (base58.Base58Error, ValueError):
        raw = b""
    checksum_ok = len(raw) == 25 and (
        hashlib.sha256(hashlib.sha256(raw[:-4]).digest()).digest()[:4] == raw[-4:]
    )
    if checksum_ok and raw[0] in (p2pkh, p2sh):
        # OP_DUP OP_HASH160 <20> OP_EQUALVERIFY OP_CHECKSIG, or OP_HASH160 <20> OP_EQUAL
        return (25 if raw[0] == p2pkh else 23), False
    decoded = decode_segwit(address, hrp)
    if decoded is None:
        raise ValueError(f"{address} is not a {network} address")
    return len(witness_script(*decoded)), True


def bitcoin_dust(address: str, network: str) -> int:
    """The dust limit in sat of an output paying `address`: 294 for P2WPKH, 330 for
    P2WSH and P2TR, 540 for P2SH, 546 for P2PKH."""
    script, witness = bitcoin_script(address, network)
    output = 8 + 1 + script  # value, script length (one byte below 253), script
    spend = 67 if witness else 148
    return (output + spend) * DUST_RELAY_FEE


def minimum_withdrawal(configured: int, chain: Chain, destination: str, network: str) -> int:
    """The smallest amount that may be withdrawn to `destination` in minor units: the
    configured minimum, never below the chain's dust limit for that destination."""
    if chain == "bitcoin":
        return max(configured, bitcoin_dust(destination, network))
    return max(configured, 1)


def refuse_destination(
    lookup: Callable[[str], AddressAssignment | None],
    tokens: Iterable[str],
    client_id: str,
    chain: Chain,
    destination: str,
) -> None:
    """DestinationRefused (CUS-3011) if the destination burns or loops the money.
    `lookup` is the platform's address book (KeyStore.lookup: every address it derived,
    a client's or its own)."""
    if chain == "ethereum":
        reason = ethereum_refusal(destination, tokens)
        if reason is not None:
            raise DestinationRefused(reason)
    for candidate in dict.fromkeys((destination, destination.lower())):
        owned = lookup(candidate)
        if owned is None:
            continue
        whose = (
            "your own deposit address"
            if owned.owner == client_id
            else "an address of this platform (a client's deposit address or its own wallet)"
        )
        raise DestinationRefused(
            f"{destination} is {whose}: a transfer within the platform is booked on the "
            "ledger, never paid on chain"
        )


def refuse_amount(
    asset: Asset, amount: int, configured: int, chain: Chain, destination: str, network: str
) -> None:
    """AmountBelowMinimum (CUS-3012) if `amount` (minor units) is under the minimum."""
    least = minimum_withdrawal(configured, chain, destination, network)
    if amount < least:
        asked, floor = (format_units(a, asset.decimals) for a in (amount, least))
        raise AmountBelowMinimum(
            f"{asked} {asset.code}; the minimum withdrawal to this destination is {floor} "
            f"{asset.code} ({least} minor units)"
        )
