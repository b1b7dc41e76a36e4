"""Platform settings, from CUSTODY_* environment variables and the stack's stack.env.

`custody stack up` writes <stack>/stack.env with every endpoint; real deployments
set the same variables themselves. Secrets are never values here, only paths to
credential files that only their owner can read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters.ledger.grants import PROCESSES, role, role_url
from adapters.temporal import TemporalTransport

_REPO_ROOT = Path(__file__).resolve().parent.parent


def stack_env_file() -> Path:
    stack_dir = Path(os.environ.get("CUSTODY_STACK_DIR", _REPO_ROOT / ".stack"))
    return stack_dir / "stack.env"


class PlatformSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CUSTODY_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:19092"
    kafka_replication_factor: int = 1  # 3 in production
    # Kafka authentication. Without a credentials dir every client is plaintext and
    # unauthenticated (a dev broker without SASL). With one, each process signs in as its
    # own SCRAM principal from <dir>/<principal>.json (0600: {"username", "password"});
    # the admin's file is apart, for the platform's admin code only (topics, ACLs).
    # Production: SASL_SSL with kafka_ssl_ca_file (docs/security.md "Kafka").
    kafka_security_protocol: str = "SASL_PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-256"
    kafka_credentials_dir: Path | None = None
    kafka_admin_credentials: Path | None = None
    kafka_ssl_ca_file: Path | None = None
    temporal_address: str = "127.0.0.1:17233"
    temporal_namespace: str = "default"
    # Temporal's transport: plaintext to the dev server; production sets TLS (a CA, and a
    # client certificate and key for mTLS) and/or an API key file (docs/security.md).
    temporal_tls: bool = False
    temporal_tls_ca_file: Path | None = None
    temporal_tls_cert_file: Path | None = None
    temporal_tls_key_file: Path | None = None
    temporal_tls_server_name: str = ""
    temporal_api_key_file: Path | None = None
    openbao_addr: str = "http://127.0.0.1:18200"
    openbao_approle_dir: Path = _REPO_ROOT / ".stack/openbao/approle"
    openbao_kek: str = "custody-kek"
    eth_rpc_url: str = "http://127.0.0.1:18545"
    eth_chain_id: int = 31337
    eth_token_address: str = ""
    eth_token_abi: Path | None = None
    eth_token_decimals: int = 6
    btc_rpc_url: str = "http://127.0.0.1:18556"
    btc_rpc_credentials: Path = _REPO_ROOT / ".stack/btcd/rpc.json"
    btc_network: str = "simnet"
    btc_confirmations: int = 6
    eth_confirmations: int = 12
    # The proof-of-stake chain (a Cosmos SDK chain; the stack's simd, decision 0027): its
    # gRPC endpoint (grpc+http:// or grpc+https://), chain id, staking denom and its
    # decimals (the ATOM asset's), the bech32 account prefix, the validators the
    # platform's clients may delegate to (comma-separated valoper addresses: the
    # signer's allow-list), and the unbonding time the chain enforces (days in
    # production; the stack's genesis says 30 s).
    cosmos_grpc_url: str = "grpc+http://127.0.0.1:20090"
    cosmos_rest_url: str = "http://127.0.0.1:20317"
    cosmos_chain_id: str = "custody-pos-1"
    cosmos_denom: str = "uatom"
    cosmos_denom_decimals: int = 6
    cosmos_address_prefix: str = "cosmos"
    cosmos_validators: str = ""
    cosmos_confirmations: int = 1  # Tendermint blocks are final once committed
    cosmos_gas_price: int = 0  # uatom per gas unit the platform offers (0: free, simd)
    signer_max_cosmos_fee: int = 200_000  # uatom: the most fee one transaction may pay
    cosmos_faucet: Path | None = None  # the test chain's faucet key (the stack's; tests)
    postgres_url: str = "postgresql://custody@127.0.0.1:15432/custody"
    ledger_url: str = "sqlite:///" + str(_REPO_ROOT / ".stack/custody.sqlite3")
    # PostgreSQL: each process may connect as its own role (adapters/ledger/grants.py),
    # CUSTODY_LEDGER_URL_API and so on; unset, a process uses ledger_url (the owner's,
    # which also runs the migrations). The stack keeps the roles' pgpass files here.
    ledger_url_api: str = ""
    ledger_url_worker: str = ""
    ledger_url_signer: str = ""
    ledger_url_router: str = ""
    ledger_url_relay: str = ""
    ledger_url_chainwatch: str = ""
    ledger_url_audit: str = ""
    ledger_url_projector: str = ""
    postgres_roles_dir: Path = _REPO_ROOT / ".stack/postgres/roles"
    platform_wallet: str = "platform"
    # Temporal task queues: the sagas' (worker) and the signer's (signer process only).
    saga_task_queue: str = "custody-sagas"
    signer_task_queue: str = "custody-signer"
    # The router's consumer group, and where a new group starts (tests: latest).
    router_group: str = "custody-router"
    router_start: str = "earliest"
    btc_fee_rate: int = 2  # sat/vB
    # Bitcoin payout batching (decision 0025): withdrawals that arrive within the window
    # go out as one transaction, up to this many outputs (1: one transaction each, at
    # once).
    btc_batch_window_seconds: float = 1.0
    btc_batch_max_outputs: int = 50
    # Ethereum payments go out from this many hot wallet addresses ("lanes", decision
    # 0026), each with its own nonce sequence, so that as many sign at once. Each lane
    # is a treasury address to fund (GET /v1/treasury); the signer signs from these only.
    eth_hot_lanes: int = Field(default=1, ge=1, le=16)
    signer_max_fee_per_gas: int = 1_000 * 10**9  # wei: the signer refuses more (1000 gwei)
    signer_max_btc_fee: int = 100_000  # sat: the most fee the signer lets one payment pay
    # Fault injection for tests only: the signer waits this long before each signature
    # (a slow HSM or OpenBao). Slows, never skips a check.
    signer_delay_seconds: float = 0.0
    # Fee griefing: the platform pays every network fee, so a withdrawal must be worth
    # more than its fee (minor units; never below the chain's dust limit), and no
    # transfer may burn more gas than its kind needs.
    min_withdrawal_btc: int = 10_000  # sat (dust is 294 for P2WPKH, 330 for P2TR)
    min_withdrawal_eth: int = 10**15  # wei (0.001 ETH)
    min_withdrawal_ctusd: int = 1_000_000  # 1 CTUSD
    min_withdrawal_atom: int = 0  # uatom (the client pays the fee: no minimum by default)
    eth_gas_limit_eth: int = 50_000  # 21,000 to an account; room for a contract wallet
    eth_gas_limit_token: int = 100_000  # an ERC-20 transfer(address,uint256)
    screening_deny_file: Path = _REPO_ROOT / ".stack/screening-deny.txt"
    api_token_secret_file: Path = _REPO_ROOT / ".stack/api-token-secret"
    # Governance (decision 0014): the hash of the genesis written by `custody governance
    # init`, pinned here so that no database writer can swap the genesis; and how long a
    # governance proposal waits for its quorum.
    governance_genesis_hash: str = ""
    governance_proposal_ttl_seconds: int = 24 * 3600
    # Fiat and liquidity: the bank's API and the platform's own account there, the
    # providers' API and which counterparties to ask for quotes.
    bank_url: str = "http://127.0.0.1:18300"
    bank_platform_iban: str = ""
    bank_platform_bic: str = ""
    lp_url: str = "http://127.0.0.1:18310"
    lp_counterparties: str = "lp-alpha,lp-beta,lp-gamma"
    trade_currency: str = "EUR"
    trade_fee_bps: int = 50  # the platform's fee on each trade's notional (0.5 %)
    # A fill may differ from the accepted quote's notional by at most this (else alerted,
    # never booked); quantity, side and counterparty must match exactly.
    trade_fill_tolerance_bps: int = 10
    trade_accept_seconds: int = 30  # a client must accept a quote within its life and this
    trade_hold_ttl_seconds: int = 24 * 3600  # fiat holds outlive any saga step by far
    # Settlement: every so often on a Temporal schedule (0: only on demand), how long
    # a counterparty has to deliver its legs before the settlement is compensated.
    settlement_every_seconds: int = 3600
    settlement_schedule_id: str = "custody-settlement"
    settlement_leg_timeout_seconds: int = 600
    settlement_poll_seconds: int = 5
    # Staking rewards (docs/staking.md): claimed and booked on a Temporal schedule (0:
    # never), the platform's commission on them, a claim's fee, and the least worth a
    # claim (above the fee). The signer allows one claim per address per period.
    staking_rewards_every_seconds: int = 24 * 3600
    staking_rewards_schedule_id: str = "custody-staking-rewards"
    staking_commission_bps: int = 1000  # 10 % of the gross reward
    staking_claim_fee: int = 2000  # uatom
    staking_min_claim: int = 10_000  # uatom
    signer_cosmos_claim_every_seconds: int = 24 * 3600
    # Slashing (docs/staking.md): positions compared with the chain on a schedule (0:
    # never); a slash is booked and alerted within about this long.
    staking_watch_every_seconds: int = 60
    staking_watch_schedule_id: str = "custody-staking-watch"
    # Saga timings: production defaults; tests shorten them.
    approval_ttl_seconds: int = 24 * 3600
    chain_poll_seconds: int = 15
    stuck_after_seconds: int = 3600

    @classmethod
    def load(cls) -> PlatformSettings:
        return cls(_env_file=stack_env_file())  # type: ignore[call-arg]

    def temporal_transport(self) -> TemporalTransport:
        return TemporalTransport(
            tls=self.temporal_tls,
            ca_file=self.temporal_tls_ca_file,
            cert_file=self.temporal_tls_cert_file,
            key_file=self.temporal_tls_key_file,
            server_name=self.temporal_tls_server_name or None,
            api_key_file=self.temporal_api_key_file,
        )

    def db_url(self, process: str) -> str:
        """The database URL process `process` (api, worker, ...) connects with: its own
        role's if set, else ledger_url."""
        if process not in PROCESSES:
            raise ValueError(f"unknown process {process!r}")
        return str(getattr(self, f"ledger_url_{process}")) or self.ledger_url

    def role_urls(self, owner_url: str) -> dict[str, str]:
        """CUSTODY_LEDGER_URL_<PROCESS> for every process whose role has a pgpass file in
        postgres_roles_dir, for the database of `owner_url` (PostgreSQL only; the
        passwords stay in the files)."""
        if not owner_url.startswith(("postgresql://", "postgres://")):
            return {}
        out = {}
        for process in PROCESSES:
            passfile = self.postgres_roles_dir / f"{role(process)}.pgpass"
            if passfile.exists():
                url = role_url(owner_url, process, str(passfile))
                out[f"CUSTODY_LEDGER_URL_{process.upper()}"] = url
        return out

    def min_withdrawal(self, asset: str) -> int:
        """The smallest withdrawal of `asset` in minor units (0: no minimum configured)."""
        return int(getattr(self, f"min_withdrawal_{asset.lower()}", 0))

    def allowed_validators(self) -> list[str]:
        """The validators clients may delegate to (CUSTODY_COSMOS_VALIDATORS), in order."""
        return [v.strip() for v in self.cosmos_validators.split(",") if v.strip()]

    def counterparties(self) -> list[str]:
        return [name.strip() for name in self.lp_counterparties.split(",") if name.strip()]

    def kafka_credentials(self, principal: str) -> Path | None:
        """The credentials file of a Kafka principal, or None where Kafka has no SASL."""
        if principal == "admin":
            if self.kafka_admin_credentials is None and self.kafka_credentials_dir is not None:
                raise RuntimeError("CUSTODY_KAFKA_ADMIN_CREDENTIALS is not set")
            return self.kafka_admin_credentials
        if self.kafka_credentials_dir is None:
            return None
        return self.kafka_credentials_dir / f"{principal}.json"

    def kafka_client(self, principal: str) -> dict[str, str]:
        """confluent-kafka settings for a client acting as `principal` (api, router,
        relay, audit, projector, bank, auditor, admin...): the bootstrap servers, plus
        its SASL/SCRAM login where the stack has credentials. Holds a password: pass it
        to a client, never to a log."""
        config = {"bootstrap.servers": self.kafka_bootstrap}
        path = self.kafka_credentials(principal)
        if path is None:
            return config
        try:
            creds = json.loads(path.read_text())
        except FileNotFoundError:
            raise RuntimeError(f"no Kafka credentials for {principal!r} ({path})") from None
        config.update(
            {
                "security.protocol": self.kafka_security_protocol,
                "sasl.mechanism": self.kafka_sasl_mechanism,
                "sasl.username": creds["username"],
                "sasl.password": creds["password"],
            }
        )
        if self.kafka_ssl_ca_file is not None:
            config["ssl.ca.location"] = str(self.kafka_ssl_ca_file)
        return config

    def approle(self, role: str) -> tuple[str, str]:
        """(role_id, secret_id) of an OpenBao AppRole, read from its credential file."""
        creds = json.loads((self.openbao_approle_dir / f"{role}.json").read_text())
        return creds["role_id"], creds["secret_id"]

    def btc_rpc_auth(self) -> tuple[str, str]:
        creds = json.loads(self.btc_rpc_credentials.read_text())
        return creds["user"], creds["password"]
