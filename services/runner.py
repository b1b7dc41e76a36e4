"""The whole platform as processes on the local stack: `custody demo` and the e2e tier.

One database, its own Temporal task queues and router consumer group, and these
processes: signer, worker, event router, outbox relay, a chain watcher per chain
(WATCHED: Ethereum, Bitcoin, Cosmos), the API, the audit writer (the events into the
audit chain) and the balances projector. The runner migrates the database as
its owner; on PostgreSQL each process then connects as its own role
(adapters/ledger/grants.py) when the stack has made them. On a test network a miner
thread makes blocks on anvil and btcd while it runs (there are no other miners there;
the Cosmos chain's validators make their own). Each process logs to
<workdir>/<name>.log.

Before the processes start, the governance ceremony runs as at an install: operator
key files for alice, bob and carol under <workdir>/operators (0600, encrypted with
CUSTODY_OPERATOR_PASSPHRASE, or a random passphrase held only in memory), then
`custody governance init` with their public keys and quorum 2, whose hash every
process gets as CUSTODY_GOVERNANCE_GENESIS_HASH.

Each process signs in to Kafka as its own principal (KAFKA_PRINCIPALS): its
CUSTODY_KAFKA_CREDENTIALS_DIR is a directory of its own holding that principal's
credentials file only (a link to the stack's), as a deployment would deliver it, so a
process that asks for any other principal fails at start instead of passing quietly.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.chains.bitcoin.faucet import BtcFaucet
from adapters.chains.bitcoin.node import BtcdNode
from adapters.chains.cosmos.faucet import CosmosFaucet
from adapters.chains.cosmos.node import CosmosNode
from adapters.chains.ethereum.faucet import DevChainFaucet
from adapters.chains.ethereum.node import Web3EthereumNode
from adapters.governance.store import SqlGovernanceStore
from adapters.ledger.migrate import upgrade
from sagas.errors import ProposalStale
from sagas.governance import DEFAULT_POLICY, SETTLEMENT_POLICY, policy_record
from sagas.intents import Intent, raw_public_key, sign_intent
from sagas.policy import PolicyRules
from services.api.auth import Role, issue, load_secret
from services.cli import operator as operator_cli
from services.cli.request_signing import ClientRequestSigner
from services.settings import PlatformSettings

ETH_DEPTH = 3
BTC_DEPTH = 2
# The chains a watcher follows (process `watch-<chain>`), each at its settings' depth
# (Cosmos: CUSTODY_COSMOS_CONFIRMATIONS, 1: a committed Tendermint block is final).
WATCHED = ("ethereum", "bitcoin", "cosmos")
OPERATORS = ("alice", "bob", "carol")
GOVERNANCE_QUORUM = 2

# Process name -> its Kafka principal (adapters/kafka/access.py); None: no Kafka at all.
KAFKA_PRINCIPALS: dict[str, str | None] = {
    "signer": None,
    "worker": "worker",
    "router": "router",
    "relay": "relay",
    "watch-ethereum": "chainwatch",
    "watch-bitcoin": "chainwatch",
    "watch-cosmos": "chainwatch",
    "api": "api",
    "audit": "audit",
    "projector": "projector",
}

# The processes that work behind the request path: under contention they yield the CPU to
# the API and the router, which answer callers (docs/decisions/0018). CUSTODY_BACKGROUND_NICE
# (default 10; 0 turns it off) is the nice value they start with.
BACKGROUND = frozenset(
    {
        "signer",
        "worker",
        "relay",
        "watch-ethereum",
        "watch-bitcoin",
        "watch-cosmos",
        "audit",
        "projector",
    }
)
BACKGROUND_NICE = int(os.environ.get("CUSTODY_BACKGROUND_NICE", "10"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Miner:
    """Makes a block on each chain every `period` seconds while running."""

    def __init__(self, eth: Web3EthereumNode, btc: BtcdNode, period: float = 1.0) -> None:
        self._eth, self._btc, self._period = eth, btc, period
        self._running = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._running.is_set():
                try:
                    self._eth.web3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
                    self._btc.mine(1)
                except Exception:  # noqa: S110 - a missed block only slows a test
                    pass
            self._stop.wait(self._period)

    def start(self) -> None:
        self._running.set()

    def pause(self) -> None:
        self._running.clear()
        time.sleep(self._period * 1.5)  # let a block in progress finish

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


class Running:
    def __init__(
        self, settings: PlatformSettings, db_url: str, workdir: Path, **overrides: str
    ) -> None:
        self.settings = settings
        self.db_url = db_url
        self.workdir = workdir
        tag = uuid.uuid4().hex[:8]
        self.tag = tag
        self.deny_file = workdir / "deny.txt"
        self.deny_file.write_text("")
        self.port = free_port()
        # Each process's own database role, where the stack has one (PostgreSQL).
        self.role_urls = settings.role_urls(db_url)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "CUSTODY_LEDGER_URL": db_url,
            **self.role_urls,
            "CUSTODY_SAGA_TASK_QUEUE": f"sagas-{tag}",
            "CUSTODY_SIGNER_TASK_QUEUE": f"signer-{tag}",
            "CUSTODY_ROUTER_GROUP": f"custody-router-{tag}",
            "CUSTODY_ROUTER_START": "latest",
            "CUSTODY_ETH_CONFIRMATIONS": str(ETH_DEPTH),
            "CUSTODY_BTC_CONFIRMATIONS": str(BTC_DEPTH),
            "CUSTODY_CHAIN_POLL_SECONDS": "1",
            "CUSTODY_SCREENING_DENY_FILE": str(self.deny_file),
            "CUSTODY_APPROVAL_TTL_SECONDS": "3600",
            "CUSTODY_SETTLEMENT_EVERY_SECONDS": "0",
            "CUSTODY_SETTLEMENT_SCHEDULE_ID": f"settlement-{tag}",
            "CUSTODY_SETTLEMENT_POLL_SECONDS": "1",
            # Rewards sweeps are started by the tests that want them (none yet).
            "CUSTODY_STAKING_REWARDS_EVERY_SECONDS": "0",
            "CUSTODY_STAKING_REWARDS_SCHEDULE_ID": f"staking-rewards-{tag}",
            "CUSTODY_STAKING_WATCH_EVERY_SECONDS": "0",
            "CUSTODY_STAKING_WATCH_SCHEDULE_ID": f"staking-watch-{tag}",
            "PYTHONUNBUFFERED": "1",
            **{f"CUSTODY_{k.upper()}": v for k, v in overrides.items()},
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.eth = Web3EthereumNode(settings.eth_rpc_url)
        self.btc = BtcdNode(settings.btc_rpc_url, settings.btc_rpc_auth(), settings.btc_network)
        self.faucet = DevChainFaucet(self.eth.web3)
        key = json.loads((settings.btc_rpc_credentials.parent / "faucet.json").read_text())
        self.btc_faucet = BtcFaucet(self.btc, settings.btc_network, key["wif"], key["address"])
        self.cosmos = CosmosNode(settings.cosmos_grpc_url, denom=settings.cosmos_denom)
        self.miner = Miner(self.eth, self.btc)
        self.secret = load_secret(settings.api_token_secret_file)
        self.operator_keys = self._operator_keys(workdir / "operators")
        self._governing = threading.RLock()
        self._client_keys: dict[str, Ed25519PrivateKey] = {}

    @cached_property
    def cosmos_faucet(self) -> CosmosFaucet:
        """The test chain's faucet (CUSTODY_COSMOS_FAUCET), made on first use: it asks the
        node which chain it is on."""
        if self.settings.cosmos_faucet is None:
            raise RuntimeError("CUSTODY_COSMOS_FAUCET is not set: is the Cosmos chain up?")
        return CosmosFaucet(self.cosmos, self.settings.cosmos_faucet, self.settings.cosmos_denom)

    # --- the governance ceremony ---------------------------------------------------
    def _operator_keys(self, where: Path) -> dict[str, Path]:
        where.mkdir(mode=0o700, exist_ok=True)
        given = os.environ.get(operator_cli.PASSPHRASE_ENV)
        self._passphrase = (given or secrets.token_urlsafe(24)).encode()
        keys = {}
        for name in OPERATORS:
            path = where / f"{name}.pem"
            if not path.exists():
                operator_cli.generate(path, self._passphrase)
            keys[name] = path
        return keys

    def operator_key(self, name: str) -> Ed25519PrivateKey:
        return operator_cli.load(self.operator_keys[name], self._passphrase)

    def init_governance(self) -> str:
        """`custody governance init` with the operators' public keys: the genesis hash."""
        args = [sys.executable, "-m", "services.cli.main", "governance", "init"]
        for name in OPERATORS:
            public = raw_public_key(self.operator_key(name)).hex()
            args += ["--operator", f"{name}={public}"]
        args += ["--quorum", str(GOVERNANCE_QUORUM), "--db-url", self.db_url]
        done = subprocess.run(args, env=self.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"custody governance init failed: {done.stderr.strip()}")
        digest = done.stdout.strip().splitlines()[-1]
        self.env["CUSTODY_GOVERNANCE_GENESIS_HASH"] = digest
        return digest

    def _store(self) -> SqlGovernanceStore:
        return SqlGovernanceStore(self.db_url, self.env["CUSTODY_GOVERNANCE_GENESIS_HASH"])

    def govern_direct(
        self, kind: str, record: dict[str, Any], client_id: str | None, asset: str = ""
    ) -> None:
        """Propose a change as alice and approve it as bob and carol, with their own keys,
        straight through the governance store (what the API's proposal routes do)."""
        with self._governing:
            store = self._store()
            for _attempt in range(5):
                proposal = store.propose(kind, record, "alice", client_id, asset)
                try:
                    for name in ("bob", "carol"):
                        after = store.approve(
                            proposal.id, sign_intent(proposal.intent, self.operator_key(name))
                        )
                except ProposalStale:  # another change went first: propose it again
                    continue
                assert after.state == "applied", after
                return
            raise RuntimeError(f"{kind} for {client_id} stayed stale")

    def default_policies(self) -> None:
        """Governance's default rules (no limits, no approvals: tests that need them set a
        client's own policy), the settlement rules (the providers' addresses only) and each
        provider's settlement-confirmation key."""
        for asset in ("BTC", "ETH", "CTUSD", "ATOM"):
            rules = PolicyRules(client_id=DEFAULT_POLICY, asset=asset)
            self.govern_direct("policy_change", policy_record(rules), DEFAULT_POLICY, asset)
        addresses: dict[str, set[str]] = {"BTC": set(), "ETH": set()}
        for name in self.settings.counterparties():
            base = f"{self.settings.lp_url}/v1/lp/{name}"
            ssi = httpx.get(f"{base}/settlement-instructions", timeout=10).json()
            for asset, address in ssi["addresses"].items():
                addresses.setdefault(asset, set()).add(address)
            # The key each provider signs its settlement confirmations with: on the local
            # stack read from the simulator (in production, from the onboarding
            # ceremony with the counterparty), registered only by a quorum.
            public = httpx.get(f"{base}/keys", timeout=10).json()["public_key"]
            record = {"action": "add", "public_key": public}
            self.govern_direct("counterparty_key_change", record, name)
        addresses["CTUSD"] = addresses["ETH"]
        for asset, allowed in addresses.items():
            rules = PolicyRules(
                client_id=SETTLEMENT_POLICY,
                asset=asset,
                allow_list_required=True,
                allowed_destinations=frozenset(allowed),
            )
            self.govern_direct("policy_change", policy_record(rules), SETTLEMENT_POLICY, asset)

    def client_key(self, client_id: str) -> Ed25519PrivateKey:
        """The client system's request-signing key, registered in governance on first use
        (a client_key_change approved by two operators)."""
        with self._governing:
            key = self._client_keys.get(client_id)
            if key is None:
                key = Ed25519PrivateKey.generate()
                public = raw_public_key(key).hex()
                record = {"action": "add", "public_key": public}
                self.govern_direct("client_key_change", record, client_id)
                self._client_keys[client_id] = key
            return key

    def approve(self, operation_id: str, operator: str, key: str | None = None) -> httpx.Response:
        """Approve a withdrawal as `operator` with the operator's own key: the intent is
        fetched, checked against its hash, signed and handed in (custody operator approve)."""
        with self.http(operator, "operator") as http:
            shown = http.get(f"/v1/withdrawals/{operation_id}/intent")
            assert shown.status_code == 200, shown.text
            body = shown.json()
            intent = Intent.model_validate(body["intent"], strict=False)
            assert intent.hash() == body["intent_hash"]
            approval = sign_intent(intent, self.operator_key(operator))
            return http.post(
                f"/v1/withdrawals/{operation_id}/approvals",
                content=approval.model_dump_json(),
                headers={
                    "Content-Type": "application/json",
                    "Idempotency-Key": key or uuid.uuid4().hex,
                },
            )

    def govern(self, reply: httpx.Response, *approvers: str) -> dict[str, Any]:
        """Approve the proposal a 202 `reply` carries with the operators' own keys (alice
        and bob unless named), as `custody operator approve` does: the applied proposal."""
        assert reply.status_code == 202, reply.text
        proposal_id = str(reply.json()["id"])
        after: dict[str, Any] = {}
        for name in approvers or ("alice", "bob"):
            with self.http(name, "operator") as http:
                intent, _ = operator_cli.fetch_intent(http, proposal_id)
                after = operator_cli.approve_proposal(
                    http, proposal_id, self.operator_key(name), intent
                )
        assert after.get("state") == "applied", after
        return after

    # --- processes -----------------------------------------------------------------
    def start(
        self, name: str, args: list[str], ready: str, timeout: float = 90, count: int = 1
    ) -> None:
        """Start a process and wait until its log says `ready` `count` times (the API: once
        per serving process)."""
        self._ready(*self._spawn(name, args), ready, timeout, count)

    def _spawn(self, name: str, args: list[str]) -> tuple[str, int]:
        """Start the process, its output appended to its log: (name, where its lines of
        this run begin in the log)."""
        log = self.workdir / f"{name}.log"
        handle = log.open("ab")
        since = handle.tell()  # a restart's log goes on after the last run's lines
        # Background processes (sagas, signing, relays, watchers) yield the CPU to the
        # request path under contention (decision 0018); nice only ever lowers priority.
        nice = (
            ["nice", "-n", str(BACKGROUND_NICE)] if name in BACKGROUND and BACKGROUND_NICE else []
        )
        proc = subprocess.Popen(
            [*nice, sys.executable, "-m", *args],
            env={**self.env, **self._kafka_env(name)},
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        self.procs[name] = proc
        return name, since

    def _ready(
        self, name: str, since: int, ready: str, timeout: float = 90, count: int = 1
    ) -> None:
        log, proc = self.workdir / f"{name}.log", self.procs[name]
        deadline = time.monotonic() + timeout
        while log.read_bytes()[since:].count(ready.encode()) < count:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited {proc.returncode}:\n{self.tail(name)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready in {timeout} s:\n{self.tail(name)}")
            time.sleep(0.1)

    def _kafka_env(self, name: str) -> dict[str, str]:
        if self.settings.kafka_credentials_dir is None:
            return {}  # Kafka without SASL
        own = self.workdir / "kafka-credentials" / name
        own.mkdir(mode=0o700, parents=True, exist_ok=True)
        principal = KAFKA_PRINCIPALS.get(name)
        if principal is not None:
            link = own / f"{principal}.json"
            source = self.settings.kafka_credentials(principal)
            if source is not None and not link.exists():
                link.symlink_to(source)
        return {"CUSTODY_KAFKA_CREDENTIALS_DIR": str(own)}

    def tail(self, name: str, lines: int = 40) -> str:
        log = self.workdir / f"{name}.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def start_watcher(self, chain: str, start_height: int | None = None) -> None:
        """The chain's watcher, `watch-<chain>` (`start_height`: where it starts if it has
        no stored position)."""
        args = ["services.chainwatch.main", "--chain", chain]
        if start_height is not None:
            args += ["--start-height", str(start_height)]
        self.start(f"watch-{chain}", args, "watching")

    def start_worker(self, pause_at: str | None = None) -> None:
        args = ["services.worker.main"] + ([f"--pause-at={pause_at}"] if pause_at else [])
        self.start("worker", args, "worker ready")

    def start_api(self) -> None:
        """The API, with its serving processes (CUSTODY_API_WORKERS), until it answers."""
        workers = int(self.env.get("CUSTODY_API_WORKERS", "2"))
        args = ["services.api.main", "--port", str(self.port), "--workers", str(workers)]
        self.start("api", args, "api ready", count=workers)
        wait_for("the API", self._healthy, timeout=30, every=0.2)

    def kill(self, name: str) -> None:
        """SIGKILL the process (the API's serving processes die with it)."""
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    def up(self, ahead: bool = False) -> Running:
        """Migrate, govern, start every process and make blocks. `ahead`: a platform
        started before its tests (tests/e2e): everything but the router and the blocks,
        which `begin()` starts when they do (its router would answer another platform's
        commands on the shared topic; its blocks would upset a test that holds the chains
        still)."""
        upgrade(self.db_url)  # as the owner: the process roles may not change the schema
        if "CUSTODY_GOVERNANCE_GENESIS_HASH" not in self.env:
            self.init_governance()
            self.default_policies()
        # Every process at once (none needs another to start; each waits for the stack's
        # services itself), then each until its log says it is ready.
        workers = int(self.env.get("CUSTODY_API_WORKERS", "2"))
        api = ["services.api.main", "--port", str(self.port), "--workers", str(workers)]
        starting = [
            (self._spawn("signer", ["services.signer.main"]), "signer ready", 1),
            (self._spawn("worker", ["services.worker.main"]), "worker ready", 1),
            (self._spawn("relay", ["services.relay.main"]), "relay ready", 1),
            *(
                (
                    self._spawn(f"watch-{c}", ["services.chainwatch.main", "--chain", c]),
                    "watching",
                    1,
                )
                for c in WATCHED
            ),
            (self._spawn("api", api), "api ready", workers),
        ]
        if not ahead:
            starting.append((self._spawn("router", ["services.router.main"]), "router ready", 1))
        for (name, since), ready, count in starting:
            self._ready(name, since, ready, count=count)
        wait_for("the API", self._healthy, timeout=30, every=0.2)
        if not ahead:
            self.begin()
        return self

    def begin(self) -> None:
        """The platform's tests begin: its router reads commands and deposits (from the
        latest offsets: so it is ready before anything is sent), its audit writer chains
        the events and its projector publishes balances, blocks are made. (The three work
        on the stack's shared topics: one platform's at a time. A second audit writer would
        fence the first.)"""
        if "router" not in self.procs:
            self.start("router", ["services.router.main"], "router ready")
        if "audit" not in self.procs:
            self.start_audit()
        if "projector" not in self.procs:
            self.start_projector()
        self.miner.start()

    def start_audit(self) -> None:
        """The audit writer (`audit`): every event into the audit chain, exactly once."""
        self.start("audit", ["services.audit.main"], "audit writer ready")

    def start_projector(self) -> None:
        """The balances projector (`projector`): rebuilt from the events, then following."""
        self.start("projector", ["services.projector.main"], "projector ready", timeout=180)

    def audit_lag(self) -> str:
        """What `custody audit lag` says now (the events the audit writer has not chained)."""
        done = subprocess.run(
            [sys.executable, "-m", "services.cli.main", "audit", "lag"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return (done.stdout.strip() or done.stderr.strip()[-500:]).replace("\n", " ")

    def audit_caught_up(self, timeout: float = 300) -> str:
        """Wait until the audit writer has chained every event published so far; what
        `custody audit lag` printed (AssertionError if it did not catch up)."""
        done = subprocess.run(
            [sys.executable, "-m", "services.cli.main", "audit", "lag", "--wait", str(timeout)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout + 60,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"the audit writer did not catch up: {done.stdout}{done.stderr[-2000:]}\n"
                f"{self.tail('audit')}"
            )
        return done.stdout.strip()

    def down(self) -> None:
        self.miner.close()
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 120) -> Any:
        return wait_for(what, check, timeout)

    def _healthy(self) -> bool:
        try:
            return httpx.get(self.base_url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    # --- HTTP ------------------------------------------------------------------------
    def token(self, sub: str, role: Role, client_id: str | None = None) -> str:
        return issue(self.secret, sub, role, client_id)

    def http(self, sub: str, role: Role, client_id: str | None = None) -> httpx.Client:
        """As `sub`; a client's system also signs its requests with its registered key."""
        signer = None
        if role == "client" and client_id is not None:
            signer = ClientRequestSigner(self.client_key(client_id))
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.token(sub, role, client_id)}"},
            timeout=30,
            auth=signer,
        )


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
