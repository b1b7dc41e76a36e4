"""The fee a transaction from a client's own Cosmos address offers (a stake, unstake,
redelegation or withdrawal: the client's address pays it, from the client's balance).

`COSMOS_FEE` uatom, or `CUSTODY_COSMOS_GAS_PRICE` times `COSMOS_FEE_GAS` when a gas price
is configured: the worker's largest gas limit for such a transaction
(services/worker/bootstrap.py COSMOS_GAS, a redelegation's), so the fee covers any."""

from __future__ import annotations

from services.settings import PlatformSettings

COSMOS_FEE = 2_000  # uatom offered per transaction (the stack's chain takes it)
COSMOS_FEE_GAS = 350_000


def cosmos_fee(settings: PlatformSettings) -> int:
    """The fee one transaction offers, in uatom: priced gas, or the fixed fee."""
    if settings.cosmos_gas_price > 0:
        return settings.cosmos_gas_price * COSMOS_FEE_GAS
    return COSMOS_FEE
