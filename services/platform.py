"""The platform's composition: the stores, chain adapters and the one platform wallet,
built from settings. Shared by the API, the worker and the event router, each with
its own OpenBao role (the API's may neither wrap nor unwrap; the worker's may wrap)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from adapters.chains.bitcoin.networks import select_network
from adapters.core_banking.http import HttpCoreBanking
from adapters.governance.store import GovernedPolicies, LiveGovernance, SqlGovernanceStore
from adapters.keys.hd import BipDeriver
from adapters.keys.store import SqlKeyStore
from adapters.ledger.migrate import upgrade
from adapters.ledger.sql import SqlLedger
from adapters.liquidity.http import HttpLiquidity
from adapters.operations.intents import SqlIntentStore
from adapters.operations.nonces import SqlNonceStore
from adapters.operations.store import SqlOperationStore
from adapters.operations.trades import SqlTradeStore
from sagas import accounts
from sagas.governance import Governance
from sagas.keys import AddressAssignment, Chain
from sagas.keys.wallets import create_wallet, deposit_address
from sagas.ledger import ATOM, BTC, CTUSD, ETH, Account, AccountKind, Asset
from services.settings import PlatformSettings

if TYPE_CHECKING:  # each node's client is imported where it is built: the API and the
    # router use none of them, and web3 alone is most of a second of every start.
    from adapters.chains.bitcoin.node import BtcdNode
    from adapters.chains.cosmos.node import CosmosNode
    from adapters.chains.ethereum.node import Web3EthereumNode

ASSETS: dict[str, tuple[Asset, Chain]] = {
    "BTC": (BTC, "bitcoin"),
    "ETH": (ETH, "ethereum"),
    "CTUSD": (CTUSD, "ethereum"),
    "ATOM": (ATOM, "cosmos"),
}
# The asset whose address a chain's deposits go to (tokens share the ETH address).
NATIVE: dict[Chain, str] = {"bitcoin": "BTC", "ethereum": "ETH", "cosmos": "ATOM"}


@dataclass
class Platform:
    settings: PlatformSettings
    db_url: str

    @classmethod
    def load(cls, db_url: str | None = None, process: str | None = None) -> Platform:
        """The platform on `db_url`, else as `process` (its own database role when one
        is configured, services/settings.py), else on ledger_url."""
        settings = PlatformSettings.load()
        url = db_url or (settings.db_url(process) if process else settings.ledger_url)
        upgrade(url)
        select_network(settings.btc_network)
        return cls(settings, url)

    @cached_property
    def ledger(self) -> SqlLedger:
        return SqlLedger(self.db_url, migrate=False)

    @cached_property
    def operations(self) -> SqlOperationStore:
        return SqlOperationStore(self.db_url, migrate=False)

    @cached_property
    def governance(self) -> SqlGovernanceStore:
        """Governance verified from the pinned genesis (decision 0014)."""
        return SqlGovernanceStore(self.db_url, self.settings.governance_genesis_hash, migrate=False)

    @cached_property
    def policies(self) -> GovernedPolicies:
        # From the verified governance chain, never from the policy_versions table.
        return GovernedPolicies(self.governance)

    @cached_property
    def intents(self) -> SqlIntentStore:
        return SqlIntentStore(self.db_url, migrate=False)

    @cached_property
    def nonces(self) -> SqlNonceStore:
        return SqlNonceStore(self.db_url)

    @cached_property
    def verified(self) -> Governance:
        """The governance state as verified from the genesis, read afresh at each use."""
        return LiveGovernance(self.governance)

    def fee_cap(self, asset: str) -> int:
        """The most a withdrawal of `asset` may pay the network, in the fee asset's minor
        unit: what its intent says and the signer enforces."""
        s = self.settings
        if ASSETS[asset][1] == "bitcoin":
            return s.signer_max_btc_fee
        if ASSETS[asset][1] == "cosmos":
            return s.signer_max_cosmos_fee
        gas = s.eth_gas_limit_eth if asset == "ETH" else s.eth_gas_limit_token
        return gas * s.signer_max_fee_per_gas

    @cached_property
    def trades(self) -> SqlTradeStore:
        return SqlTradeStore(self.db_url, migrate=False)

    @cached_property
    def bank(self) -> HttpCoreBanking:
        return HttpCoreBanking(self.settings.bank_url, self.settings.bank_platform_iban)

    @cached_property
    def providers(self) -> dict[str, HttpLiquidity]:
        url = self.settings.lp_url
        return {name: HttpLiquidity(url, name) for name in self.settings.counterparties()}

    @cached_property
    def keys(self) -> SqlKeyStore:
        return SqlKeyStore(self.db_url, migrate=False)

    @cached_property
    def deriver(self) -> BipDeriver:
        return BipDeriver(self.settings.btc_network, self.settings.cosmos_address_prefix)

    @cached_property
    def eth(self) -> Web3EthereumNode:
        from adapters.chains.ethereum.node import Web3EthereumNode

        return Web3EthereumNode(self.settings.eth_rpc_url)

    @cached_property
    def cosmos(self) -> CosmosNode:
        from adapters.chains.cosmos.node import CosmosNode

        return CosmosNode(self.settings.cosmos_grpc_url, denom=self.settings.cosmos_denom)

    @cached_property
    def btc(self) -> BtcdNode:
        from adapters.chains.bitcoin.node import BtcdNode

        s = self.settings
        return BtcdNode(s.btc_rpc_url, s.btc_rpc_auth(), s.btc_network)

    @property
    def tokens(self) -> dict[str, str]:
        """Asset code -> ERC-20 contract address."""
        return {"CTUSD": self.settings.eth_token_address}

    # --- set-up (worker) ------------------------------------------------------------
    def open_books(self) -> None:
        """Assets and the platform's accounts for each (idempotent)."""
        for asset, _chain in ASSETS.values():
            self.ledger.register_asset(asset)
            for name, kind in accounts.PLATFORM_ACCOUNTS:
                self.ledger.open_account(Account(id=name(asset.code), asset=asset.code, kind=kind))

    def create_wallet(self) -> None:
        """The platform wallet, created once by the worker (whose role may wrap a seed)."""
        from adapters.keys.openbao import OpenBaoKeyWrapper

        s = self.settings
        wrapper = OpenBaoKeyWrapper(s.openbao_addr, *s.approle("custody-worker"), s.openbao_kek)
        create_wallet(s.platform_wallet, self.deriver, wrapper, self.keys)

    def hot_wallet(self) -> AddressAssignment:
        """The Ethereum address withdrawals of ETH and tokens are paid from (its first
        lane). It is the treasury's deposit address: what the platform puts in is booked
        as treasury."""
        return self.hot_wallets()[0]

    def hot_wallets(self) -> list[AddressAssignment]:
        """The hot wallet's lanes (decision 0026; CUSTODY_ETH_HOT_LANES): each an address
        of the platform wallet with its own nonces, whose deposits are the treasury's."""
        return [
            deposit_address(
                self.keys,
                self.deriver,
                self.settings.platform_wallet,
                "ethereum",
                accounts.hot_lane(lane),
                None,
                "ETH",
            )
            for lane in range(self.settings.eth_hot_lanes)
        ]

    # --- clients ----------------------------------------------------------------------
    def open_client_accounts(self, client_id: str) -> list[str]:
        opened = []
        for asset, _chain in ASSETS.values():
            account = accounts.client(client_id, asset.code)
            self.ledger.open_account(
                Account(
                    id=account,
                    asset=asset.code,
                    kind=AccountKind.CLIENT_AVAILABLE,
                    owner=client_id,
                )
            )
            opened.append(account)
        return opened

    def settlement_address(self, counterparty: str, asset: str) -> str:
        """Where a provider delivers an asset to the platform: an address of the platform
        wallet given to the settlement account, so the deposit saga books what arrives."""
        chain = ASSETS[asset][1]
        return deposit_address(
            self.keys,
            self.deriver,
            self.settings.platform_wallet,
            chain,
            accounts.settlement(counterparty, asset),
            None,
            asset,
        ).address

    def client_address(self, client_id: str, asset: str) -> AddressAssignment:
        """The client's deposit address for an asset (tokens: the client's ETH address)."""
        chain = ASSETS[asset][1]
        native = NATIVE[chain]
        return deposit_address(
            self.keys,
            self.deriver,
            self.settings.platform_wallet,
            chain,
            accounts.client(client_id, native),
            client_id,
            native,
        )
