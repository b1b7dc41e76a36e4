"""anvil_reorg on the shared dev chain, putting back contract code the reorg loses.

anvil (1.7.1) rebuilds the state from the common block's stored copy, and that copy
can lack the code of contracts: seen once after a reorg of 11 blocks, the stack's
token had its storage but no code, so every token call on the shared chain silently
did nothing. After each reorg the code of the given contracts is compared with what
it was and put back if it is gone (anvil_setCode; the storage survives)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from web3 import Web3

log = logging.getLogger("tests.reorgs")


def anvil_reorg(
    w3: Web3, depth: int, txs: Sequence[tuple[bytes, int]] = (), keep: Sequence[str] = ()
) -> list[str]:
    """Replace the top `depth` blocks; `txs` (signed bytes, block offset) go into the new
    ones. Returns the contracts of `keep` whose code had to be put back."""
    codes = {address: bytes(w3.eth.get_code(Web3.to_checksum_address(address))) for address in keep}
    request: Any = w3.provider.make_request
    answer = request("anvil_reorg", [depth, [["0x" + raw.hex(), at] for raw, at in txs]])
    if "error" in answer:
        raise RuntimeError(f"anvil_reorg: {answer['error']}")
    lost = [
        address
        for address, code in codes.items()
        if code and bytes(w3.eth.get_code(Web3.to_checksum_address(address))) != code
    ]
    for address in lost:
        log.warning("anvil_reorg lost the code of %s: putting it back", address)
        request("anvil_setCode", [Web3.to_checksum_address(address), "0x" + codes[address].hex()])
    return lost
