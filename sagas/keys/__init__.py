"""HD wallets: models of wallets (wrapped seeds, public account keys) and deposit addresses.

A wallet's seed exists in clear only inside the signer, for one signature. Everything
else works from what is stored: the seed wrapped by the key service, and each chain's
account-level extended public key, from which deposit addresses are derived without
any secret.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Chain = Literal["bitcoin", "ethereum", "cosmos"]
CHAINS: tuple[Chain, ...] = ("bitcoin", "ethereum", "cosmos")
Network = Literal["mainnet", "testnet", "regtest", "simnet", "anvil"]


class WalletRecord(BaseModel):
    """What the platform stores about a wallet: never the seed in clear."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    wallet_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    wrapped_seed: str = Field(description="the BIP39 seed, encrypted by the key service")
    xpubs: dict[Chain, str] = Field(description="account-level extended public key per chain")
    btc_network: str
    created_at: datetime

    def __repr__(self) -> str:
        return f"WalletRecord(wallet_id={self.wallet_id!r})"


class AddressAssignment(BaseModel):
    """A deposit address and the client ledger account it belongs to (for ever)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str
    account_id: str
    owner: str | None
    chain: Chain
    asset: str
    wallet_id: str
    change: int
    index: int
