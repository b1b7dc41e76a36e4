"""Bitcoin network parameters for python-bitcoinlib, including btcd's simnet.

python-bitcoinlib keeps the active network in a module global (`bitcoin.params`);
this is the one place that sets it. Simnet is btcd's persistent private test
network (regtest in btcd wipes its chain at every start: see
docs/decisions/0002-btcd-simnet.md).
"""

from __future__ import annotations

from typing import ClassVar

import bitcoin
import bitcoin.core


class SimNetParams(bitcoin.RegTestParams):  # type: ignore[misc]
    """btcd's simnet (chaincfg.SimNetParams): address prefixes and bech32 HRP."""

    MESSAGE_START = b"\x16\x1c\x14\x12"
    DEFAULT_PORT = 18555
    RPC_PORT = 18556
    BASE58_PREFIXES: ClassVar[dict[str, int]] = {
        "PUBKEY_ADDR": 0x3F,
        "SCRIPT_ADDR": 0x7B,
        "SECRET_KEY": 0x64,
    }
    BECH32_HRP = "sb"


NETWORKS = ("mainnet", "testnet", "regtest", "simnet")
TEST_NETWORKS = frozenset({"regtest", "simnet"})


def select_network(name: str) -> None:
    """Make python-bitcoinlib encode and decode addresses and keys for `name`."""
    if name not in NETWORKS:
        raise ValueError(f"unknown bitcoin network {name!r}; one of {', '.join(NETWORKS)}")
    if name == "simnet":
        bitcoin.SelectParams("regtest")  # core consensus params; simnet's differ only in genesis
        bitcoin.params = SimNetParams()
    else:
        bitcoin.SelectParams(name)
