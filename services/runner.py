"""The whole platform as processes on the local stack: `custody demo` and the e2e tier.

One database, its own Temporal task queues and router consumer group, and these
processes: signer, worker, event router, outbox relay, both chain watchers and the
API. The runner migrates the database as its owner; on PostgreSQL each process then
connects as its own role (adapters/ledger/grants.py) when the stack has made them.
On a test network a miner thread makes blocks on anvil and btcd while it runs
(there are no other miners there). Each process logs to <workdir>/<name>.log.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from adapters.chains.bitcoin.faucet import BtcFaucet
from adapters.chains.bitcoin.node import BtcdNode
from adapters.chains.ethereum.faucet import DevChainFaucet
from adapters.chains.ethereum.node import Web3EthereumNode
from adapters.ledger.migrate import upgrade
from services.api.auth import Role, issue, load_secret
from services.settings import PlatformSettings

ETH_DEPTH = 3
BTC_DEPTH = 2


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
            "CUSTODY_ROUTER_GROUP": f"router-{tag}",
            "CUSTODY_ROUTER_START": "latest",
            "CUSTODY_ETH_CONFIRMATIONS": str(ETH_DEPTH),
            "CUSTODY_BTC_CONFIRMATIONS": str(BTC_DEPTH),
            "CUSTODY_CHAIN_POLL_SECONDS": "1",
            "CUSTODY_SCREENING_DENY_FILE": str(self.deny_file),
            "CUSTODY_APPROVAL_TTL_SECONDS": "3600",
            "CUSTODY_SETTLEMENT_EVERY_SECONDS": "0",
            "CUSTODY_SETTLEMENT_SCHEDULE_ID": f"settlement-{tag}",
            "CUSTODY_SETTLEMENT_POLL_SECONDS": "1",
            "PYTHONUNBUFFERED": "1",
            **{f"CUSTODY_{k.upper()}": v for k, v in overrides.items()},
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.eth = Web3EthereumNode(settings.eth_rpc_url)
        self.btc = BtcdNode(settings.btc_rpc_url, settings.btc_rpc_auth(), settings.btc_network)
        self.faucet = DevChainFaucet(self.eth.web3)
        key = json.loads((settings.btc_rpc_credentials.parent / "faucet.json").read_text())
        self.btc_faucet = BtcFaucet(self.btc, settings.btc_network, key["wif"], key["address"])
        self.miner = Miner(self.eth, self.btc)
        self.secret = load_secret(settings.api_token_secret_file)

    # --- processes -----------------------------------------------------------------
    def start(self, name: str, args: list[str], ready: str, timeout: float = 90) -> None:
        log = self.workdir / f"{name}.log"
        handle = log.open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", *args], env=self.env, stdout=handle, stderr=subprocess.STDOUT
        )
        self.procs[name] = proc
        deadline = time.monotonic() + timeout
        while ready.encode() not in log.read_bytes():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited {proc.returncode}:\n{self.tail(name)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready in {timeout} s:\n{self.tail(name)}")
            time.sleep(0.1)

    def tail(self, name: str, lines: int = 40) -> str:
        log = self.workdir / f"{name}.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def start_worker(self, pause_at: str | None = None) -> None:
        args = ["services.worker.main"] + ([f"--pause-at={pause_at}"] if pause_at else [])
        self.start("worker", args, "worker ready")

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    def up(self) -> Running:
        upgrade(self.db_url)  # as the owner: the process roles may not change the schema
        self.start("signer", ["services.signer.main"], "signer ready")
        self.start_worker()
        self.start("router", ["services.router.main"], "router ready")
        self.start("relay", ["services.relay.main"], "relay ready")
        for chain in ("ethereum", "bitcoin"):
            self.start(f"watch-{chain}", ["services.chainwatch.main", "--chain", chain], "watching")
        self.start("api", ["services.api.main", "--port", str(self.port)], "api ready")
        wait_for("the API", self._healthy, timeout=30, every=0.2)
        self.miner.start()
        return self

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
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.token(sub, role, client_id)}"},
            timeout=30,
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
