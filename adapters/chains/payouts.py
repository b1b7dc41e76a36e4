"""Payouts for the withdrawal and settlement sagas: one rail per chain, each in its own
folder (adapters/chains/<chain>/payouts.py), each recording before it broadcasts, so
every call is idempotent by operation id:

- ETH and ERC-20 from the platform's hot wallet through the EVM broadcaster;
- BTC from the platform wallet's UTXO set through the Bitcoin sender, alone or batched;
- ATOM from the client's own address through the Cosmos adapter (decision 0035).

`PayoutRails` sends each payment on the rail that pays its asset; adding a chain adds a
folder with its rail and one line where the worker builds them (`ChainPayouts`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from adapters.chains.bitcoin.batches import BitcoinBatches
from adapters.chains.bitcoin.node import BtcdNode
from adapters.chains.bitcoin.payouts import BitcoinPayouts
from adapters.chains.bitcoin.sender import BitcoinSender
from adapters.chains.cosmos.payouts import CosmosPayouts
from adapters.chains.cosmos.staking import CosmosDelegations
from adapters.chains.ethereum.broadcaster import EvmBroadcaster
from adapters.chains.ethereum.node import Web3EthereumNode
from adapters.chains.ethereum.payouts import (
    EVM_SENDS_AT_ONCE,
    EVM_SENDS_MOST,
    EVM_SENDS_PER_LANE,
    EvmPayouts,
    _OperationSigner,
)
from sagas.errors import DependencyUnavailable
from sagas.ports import EvmKeySigner, Payouts
from sagas.withdrawal import ChainStatus

__all__ = [
    "EVM_SENDS_AT_ONCE",
    "EVM_SENDS_MOST",
    "EVM_SENDS_PER_LANE",
    "ChainPayouts",
    "PayoutRails",
    "Rail",
    "_OperationSigner",
]


class Rail(Payouts, Protocol):
    """One chain's payouts: the assets it pays, and whether it recorded an operation."""

    @property
    def assets(self) -> frozenset[str]: ...

    def recorded(self, operation_id: str) -> bool: ...


class PayoutRails:
    """sagas.ports.Payouts over the chains' rails: each payment on the rail of its asset.

    An asset no rail of this worker pays is DependencyUnavailable, retried, never a
    refusal: a refusal voids the reservation, and a worker deployed without a chain's rail
    cannot know that another worker has not already paid it (the API accepts only the
    assets the platform pays, so this is a deployment fault the saga's alert shows)."""

    def __init__(self, rails: Sequence[Rail]) -> None:
        self._rails = list(rails)
        self._by_asset: dict[str, Rail] = {}
        for rail in self._rails:
            for asset in rail.assets:
                if asset in self._by_asset:
                    raise ValueError(f"two payout rails for {asset}")
                self._by_asset[asset] = rail

    def __repr__(self) -> str:
        return f"PayoutRails({', '.join(map(repr, self._rails))})"

    def _rail(self, asset: str) -> Rail:
        rail = self._by_asset.get(asset)
        if rail is None:
            raise DependencyUnavailable(f"this worker has no payout rail for {asset}")
        return rail

    def send(
        self,
        operation_id: str,
        asset: str,
        destination: str,
        amount: int,
        source: str | None = None,
        fee: int = 0,
    ) -> str:
        return self._rail(asset).send(operation_id, asset, destination, amount, source, fee)

    def status(self, operation_id: str, asset: str) -> ChainStatus:
        return self._rail(asset).status(operation_id, asset)

    def rebroadcast(self, operation_id: str) -> None:
        for rail in self._rails:
            if rail.recorded(operation_id):
                rail.rebroadcast(operation_id)

    def bump(
        self, operation_id: str, asset: str, destination: str, amount: int, percent: int
    ) -> str:
        return self._rail(asset).bump(operation_id, asset, destination, amount, percent)


class ChainPayouts(PayoutRails):
    """The platform's rails, as the worker builds them."""

    def __init__(
        self,
        db_url: str,
        wallet_id: str,
        evm: tuple[EvmBroadcaster, Web3EthereumNode, EvmKeySigner, Sequence[tuple[int, str]]]
        | None,
        tokens: dict[str, str],
        eth_confirmations: int,
        btc: tuple[BitcoinSender, BtcdNode] | None,
        btc_confirmations: int,
        btc_fee_rate: int = 2,
        gas_limits: tuple[int, int] | None = None,
        btc_batches: BitcoinBatches | None = None,
        cosmos: CosmosDelegations | None = None,
    ) -> None:
        """`evm`: (broadcaster, node, signer, the hot wallet's lanes); `tokens`: asset code
        -> ERC-20 contract address; `gas_limits`: the most gas an ETH transfer and a token
        transfer may use (None: unbounded, tests only); `btc_batches`: Bitcoin withdrawals
        go out in batches (None: one transaction each); `cosmos`: ATOM withdrawals, each
        from the client's own address (decision 0035)."""
        rails: list[Rail] = []
        if evm is not None:
            rails.append(EvmPayouts(db_url, wallet_id, evm, tokens, eth_confirmations, gas_limits))
        if btc is not None:
            rails.append(
                BitcoinPayouts(db_url, wallet_id, btc, btc_confirmations, btc_fee_rate, btc_batches)
            )
        if cosmos is not None:
            rails.append(CosmosPayouts(cosmos))
        super().__init__(rails)
        self._wallet = wallet_id

    def __repr__(self) -> str:
        return f"ChainPayouts(wallet={self._wallet!r})"
