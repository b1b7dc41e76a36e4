"""anvil (Ethereum dev node) from npm, state kept across restarts, with a test stablecoin."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
from web3 import Web3

from infra import proc
from infra.services.base import Say, Service
from infra.settings import ANVIL_VERSION, INFRA_DIR, OPENZEPPELIN_VERSION

NPM_INFRA = INFRA_DIR / "npm"
CHAIN_ID = 31337
CONTRACTS = INFRA_DIR / "contracts"
TOKEN_CONTRACT = "CustodyTestStablecoin"  # ERC20PresetMinterPauser with 6 decimals
TOKEN_SYMBOL = "CTUSD"
TOKEN_DECIMALS = 6


class Anvil(Service):
    name = "anvil"

    @property
    def npm_dir(self) -> Path:
        return self.s.stack_dir / "npm"

    @property
    def binary(self) -> Path:
        return self.npm_dir / "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"

    @property
    def token_file(self) -> Path:
        return self.dir / "token.json"

    @property
    def token_artifact(self) -> Path:
        return self.npm_dir / "build" / f"{TOKEN_CONTRACT}.json"

    def _stamp(self) -> str:
        # Reinstall when the lock file, the compile script or a contract changes.
        parts = [
            NPM_INFRA / "package-lock.json",
            NPM_INFRA / "compile.js",
            *sorted(CONTRACTS.glob("*.sol")),
        ]
        return "".join(p.read_text() for p in parts)

    def is_installed(self) -> bool:
        stamp = self.npm_dir / ".installed"
        return (
            self.binary.exists()
            and self.token_artifact.exists()
            and stamp.exists()
            and stamp.read_text() == self._stamp()
        )

    def install(self, say: Say) -> None:
        say(
            f"npm ci (@foundry-rs/anvil-linux-amd64@{ANVIL_VERSION}, "
            f"@openzeppelin/contracts@{OPENZEPPELIN_VERSION}, solc)"
        )
        self.npm_dir.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json", "compile.js"):
            shutil.copy(NPM_INFRA / name, self.npm_dir / name)
        proc.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=self.npm_dir)
        say(f"compile {TOKEN_CONTRACT} (solc-js, offline)")
        proc.run(
            ["node", "compile.js", str(CONTRACTS), str(self.npm_dir / "build")], cwd=self.npm_dir
        )
        (self.npm_dir / ".installed").write_text(self._stamp())

    def version(self) -> str:
        return proc.run([str(self.binary), "--version"]).stdout.split()[2]

    def ports(self) -> dict[str, int]:
        return {"rpc": self.s.anvil_port}

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "--host",
            self.s.host,
            "--port",
            str(self.s.anvil_port),
            "--chain-id",
            str(CHAIN_ID),
            # Loaded at start, dumped on exit and every 2 s, so a crash loses at most 2 s.
            # Only the latest state is dumped: with --preserve-historical-states every
            # block's state went to the file every 2 s, and anvil spent ~40% of a core
            # rewriting 24 MB of JSON while idle (seen on the 2-core machines).
            "--state",
            str(self.dir / "state.json"),
            "--state-interval",
            "2",
        ]

    def rpc_url(self) -> str:
        return f"http://{self.s.host}:{self.s.anvil_port}"

    def _rpc(self, method: str, params: list[Any]) -> Any:
        reply = httpx.post(
            self.rpc_url(),
            json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
            timeout=5,
        ).json()
        return reply["result"]

    def healthy(self) -> bool:
        return int(self._rpc("eth_chainId", []), 16) == CHAIN_ID

    def bootstrap(self, say: Say) -> dict[str, str]:
        w3 = Web3(Web3.HTTPProvider(self.rpc_url()))
        address = None
        if self.token_file.exists():
            recorded = json.loads(self.token_file.read_text())
            address = recorded["address"]
            code = w3.eth.get_code(Web3.to_checksum_address(address))
            if recorded.get("contract") != TOKEN_CONTRACT or code in (b"", None):
                address = None  # chain state was reset, or the contract changed: deploy again
        if address is None:
            say(f"deploy {TOKEN_CONTRACT} as {TOKEN_SYMBOL} ({TOKEN_DECIMALS} decimals)")
            artifact = json.loads(self.token_artifact.read_text())
            deployer = w3.eth.accounts[0]  # anvil's unlocked dev account: no key handled here
            contract = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
            tx = contract.constructor().transact({"from": deployer})
            address = w3.eth.wait_for_transaction_receipt(tx, timeout=30)["contractAddress"]
            deployed = w3.eth.contract(address=address, abi=artifact["abi"])
            if deployed.functions.decimals().call() != TOKEN_DECIMALS:
                raise RuntimeError(f"{TOKEN_CONTRACT} reports the wrong decimals")
            self.token_file.write_text(
                json.dumps(
                    {
                        "address": address,
                        "contract": TOKEN_CONTRACT,
                        "symbol": TOKEN_SYMBOL,
                        "decimals": TOKEN_DECIMALS,
                        "minter": deployer,
                    }
                )
            )
        return {
            "CUSTODY_ETH_RPC_URL": self.rpc_url(),
            "CUSTODY_ETH_CHAIN_ID": str(CHAIN_ID),
            "CUSTODY_ETH_TOKEN_ADDRESS": str(address),
            "CUSTODY_ETH_TOKEN_ABI": str(self.token_artifact),
            "CUSTODY_ETH_TOKEN_DECIMALS": str(TOKEN_DECIMALS),
        }
