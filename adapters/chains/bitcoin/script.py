"""Bitcoin addresses to output scripts, for the outputs the platform will pay.

python-bitcoinlib (0.12) knows bech32 (BIP173) only, so it refuses taproot
addresses and would take a bech32 string of any witness version; segwit
addresses are decoded here with bip-utils, which checks the checksum variant per
BIP350 (bech32 for version 0, bech32m for 1 and above). Payable: version 0 with a
20- or 32-byte program (P2WPKH, P2WSH) and version 1 with 32 bytes (P2TR).
Versions 2 to 16, and version 1 of other lengths, are valid strings that no
consensus rule protects yet (anyone can spend them): never paid.
"""

from __future__ import annotations

import bitcoin
from bip_utils import Bech32ChecksumError, SegwitBech32Decoder, SegwitBech32Encoder
from bitcoin.base58 import Base58Error
from bitcoin.core.script import CScript
from bitcoin.wallet import CBase58BitcoinAddress, CBitcoinAddress, CBitcoinAddressError

from sagas.errors import CannotPay

_OP_1 = 0x51
DUST_RELAY_FEE = 3  # sat/vB: relay policy's dust fee rate (Bitcoin Core and btcd)


def decode_segwit(address: str, hrp: str) -> tuple[int, bytes] | None:
    """(witness version, program) of a BIP173/BIP350 address with this HRP, or None."""
    try:
        version, program = SegwitBech32Decoder.Decode(hrp, address)
    except (Bech32ChecksumError, ValueError, IndexError):
        return None
    return int(version), bytes(program)


def payable_witness(version: int, program: bytes) -> bool:
    return (version == 0 and len(program) in (20, 32)) or (version == 1 and len(program) == 32)


def witness_script(version: int, program: bytes) -> bytes:
    """OP_0 or OP_1..OP_16, then the program pushed (2 to 40 bytes: a single-byte push)."""
    return bytes([0 if version == 0 else _OP_1 + version - 1, len(program)]) + program


def output_script(address: str) -> bytes:
    """The scriptPubKey paying `address` on the selected network (bitcoin.params).
    Raises CannotPay for anything the platform will not pay (CUS-4223, permanent)."""
    hrp = str(bitcoin.params.BECH32_HRP)
    if address.lower().startswith(hrp + "1"):
        decoded = decode_segwit(address, hrp)
        if decoded is None or not payable_witness(*decoded):
            raise CannotPay(f"{address}: not a payable segwit address on this network")
        return witness_script(*decoded)
    try:
        return bytes(CBase58BitcoinAddress(address).to_scriptPubKey())
    except (Base58Error, CBitcoinAddressError, ValueError) as exc:
        raise CannotPay(f"{address}: not an address of this network") from exc


_WITNESS_VERSIONS = {0: 0} | {_OP_1 + v - 1: v for v in range(1, 17)}  # opcode -> version


def address_of_script(script: bytes) -> str | None:
    """The address an output script pays on the selected network (taproot included,
    in bech32m), or None for a script no address stands for."""
    version = _WITNESS_VERSIONS.get(script[0]) if len(script) >= 4 else None
    if version is not None and 2 <= script[1] <= 40 and len(script) == script[1] + 2:
        return str(SegwitBech32Encoder.Encode(str(bitcoin.params.BECH32_HRP), version, script[2:]))
    try:
        return str(CBitcoinAddress.from_scriptPubKey(CScript(script)))
    except (CBitcoinAddressError, ValueError, IndexError):
        return None


def dust_limit(script: bytes) -> int:
    """The smallest amount relay policy takes for an output paying `script`: what
    spending it costs at the dust relay fee, counting the input that will spend it (67
    vB for a witness program, 148 otherwise). 294 sat for P2WPKH, 330 for P2WSH and
    P2TR, 540 for P2SH, 546 for P2PKH."""
    witness = _WITNESS_VERSIONS.get(script[0]) is not None and len(script) == script[1] + 2
    return (8 + 1 + len(script) + (67 if witness else 148)) * DUST_RELAY_FEE
