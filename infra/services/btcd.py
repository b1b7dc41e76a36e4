"""btcd (Bitcoin full node) on simnet, built with `go install` from the Go module proxy.

Simnet, not regtest: btcd deletes its regtest chain at every start, and the stack must
keep its chain across restarts (docs/decisions/0002-btcd-simnet.md).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import httpx
from bitcoin.core import Hash160
from bitcoin.core.script import CScript
from bitcoin.wallet import CBitcoinSecret, P2WPKHBitcoinAddress

from adapters.chains.bitcoin.networks import select_network
from infra import proc
from infra.services.base import Say, Service, write_private
from infra.settings import BTCD_VERSION

MODULE = "github.com/btcsuite/btcd"
NETWORK = "simnet"


def new_faucet_key() -> tuple[str, str]:
    """A fresh P2WPKH key pair for the test network: (WIF, sb1... address)."""
    select_network(NETWORK)
    key = CBitcoinSecret.from_secret_bytes(secrets.token_bytes(32))
    script = CScript([0, Hash160(key.pub)])
    return str(key), str(P2WPKHBitcoinAddress.from_scriptPubKey(script))


class Btcd(Service):
    name = "btcd"

    @property
    def binary(self) -> Path:
        return self.s.bin_dir / "btcd"

    @property
    def btcctl(self) -> Path:
        return self.s.bin_dir / "btcctl"

    @property
    def rpc_file(self) -> Path:
        return self.dir / "rpc.json"

    @property
    def faucet_file(self) -> Path:
        """The test network miner's key: coinbase rewards land here, tests fund from it."""
        return self.dir / "faucet.json"

    def is_installed(self) -> bool:
        if not (self.binary.exists() and self.btcctl.exists()):
            return False
        return self.version() == BTCD_VERSION.lstrip("v")

    def install(self, say: Say) -> None:
        say(f"go install {MODULE}@{BTCD_VERSION} and cmd/btcctl (Go module proxy)")
        self.s.bin_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "GOBIN": str(self.s.bin_dir), "CGO_ENABLED": "0"}
        proc.run(
            ["go", "install", f"{MODULE}@{BTCD_VERSION}", f"{MODULE}/cmd/btcctl@{BTCD_VERSION}"],
            env=env,
        )

    def version(self) -> str:
        return proc.run([str(self.binary), "--version"]).stdout.split()[2].removesuffix("-beta")

    def ports(self) -> dict[str, int]:
        return {"rpc": self.s.btcd_rpc_port, "p2p": self.s.btcd_p2p_port}

    def prepare(self, say: Say) -> None:
        if not self.rpc_file.exists():
            write_private(
                self.rpc_file,
                json.dumps({"user": "custody", "password": secrets.token_urlsafe(24)}),
            )
        if not self.faucet_file.exists():
            wif, address = new_faucet_key()
            write_private(self.faucet_file, json.dumps({"wif": wif, "address": address}))

    def _rpc_credentials(self) -> dict[str, str]:
        return dict(json.loads(self.rpc_file.read_text()))

    def command(self) -> list[str]:
        rpc = self._rpc_credentials()
        faucet = json.loads(self.faucet_file.read_text())
        # Credentials go through a config file, not argv, so `ps` never shows them.
        config = self.dir / "btcd.conf"
        write_private(config, f"rpcuser={rpc['user']}\nrpcpass={rpc['password']}\n")
        return [
            str(self.binary),
            f"--{NETWORK}",
            f"--configfile={config}",
            f"--datadir={self.dir / 'data'}",
            f"--logdir={self.dir / 'logs'}",
            f"--rpclisten={self.s.host}:{self.s.btcd_rpc_port}",
            f"--listen={self.s.host}:{self.s.btcd_p2p_port}",
            "--notls",
            "--txindex",
            f"--miningaddr={faucet['address']}",
        ]

    def rpc_url(self) -> str:
        return f"http://{self.s.host}:{self.s.btcd_rpc_port}"

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        creds = self._rpc_credentials()
        reply = httpx.post(
            self.rpc_url(),
            json={"jsonrpc": "1.0", "id": 1, "method": method, "params": params or []},
            auth=(creds["user"], creds["password"]),
            timeout=10,
        )
        reply.raise_for_status()
        return reply.json()["result"]

    def healthy(self) -> bool:
        return isinstance(self.rpc("getblockcount"), int)

    def _segwit(self) -> str:
        info = self.rpc("getblockchaininfo")
        return str(info.get("bip9_softforks", {}).get("segwit", {}).get("status", "unknown"))

    def bootstrap(self, say: Say) -> dict[str, str]:
        # A fresh simnet chain has segwit (P2WPKH, all the platform uses) inactive until
        # its BIP9 deployment activates: mine until it has. Blocks cost milliseconds here.
        if self._segwit() != "active":
            say("mine until segwit is active (BIP9, first start)")
            for _ in range(40):
                self.rpc("generate", [100])
                if self._segwit() == "active":
                    break
            else:
                raise RuntimeError("segwit did not activate on simnet")
        return {
            "CUSTODY_BTC_RPC_URL": self.rpc_url(),
            "CUSTODY_BTC_RPC_CREDENTIALS": str(self.rpc_file),
            "CUSTODY_BTC_FAUCET": str(self.faucet_file),
            "CUSTODY_BTC_NETWORK": NETWORK,
        }
