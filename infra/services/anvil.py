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
TOKEN_NAME = "Custody Test USD"
TOKEN_SYMBOL = "CTUSD"
TOKEN_ARTIFACT = "@openzeppelin/contracts/build/contracts/ERC20PresetMinterPauser.json"


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

    def is_installed(self) -> bool:
        stamp = self.npm_dir / ".installed"
        return (
            self.binary.exists()
            and (self.npm_dir / "node_modules" / TOKEN_ARTIFACT).exists()
            and stamp.exists()
            and stamp.read_text() == (NPM_INFRA / "package-lock.json").read_text()
        )

    def install(self, say: Say) -> None:
        say(
            f"npm ci (@foundry-rs/anvil-linux-amd64@{ANVIL_VERSION}, "
            f"@openzeppelin/contracts@{OPENZEPPELIN_VERSION})"
        )
        self.npm_dir.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(NPM_INFRA / name, self.npm_dir / name)
        proc.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=self.npm_dir)
        (self.npm_dir / ".installed").write_text((NPM_INFRA / "package-lock.json").read_text())

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
            "--state",
            str(self.dir / "state.json"),
            "--state-interval",
            "2",
            "--preserve-historical-states",
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
            address = json.loads(self.token_file.read_text())["address"]
            if w3.eth.get_code(Web3.to_checksum_address(address)) in (b"", None):
                address = None  # chain state was reset; deploy again
        if address is None:
            say(f"deploy ERC20PresetMinterPauser as {TOKEN_SYMBOL}")
            artifact = json.loads((self.npm_dir / "node_modules" / TOKEN_ARTIFACT).read_text())
            deployer = w3.eth.accounts[0]  # anvil's unlocked dev account: no key handled here
            contract = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
            tx = contract.constructor(TOKEN_NAME, TOKEN_SYMBOL).transact({"from": deployer})
            receipt = w3.eth.wait_for_transaction_receipt(tx, timeout=30)
            address = receipt["contractAddress"]
            self.token_file.write_text(
                json.dumps(
                    {"address": address, "symbol": TOKEN_SYMBOL, "minter": deployer, "decimals": 18}
                )
            )
        return {
            "CUSTODY_ETH_RPC_URL": self.rpc_url(),
            "CUSTODY_ETH_CHAIN_ID": str(CHAIN_ID),
            "CUSTODY_ETH_TOKEN_ADDRESS": str(address),
            "CUSTODY_ETH_TOKEN_ABI": str(self.npm_dir / "node_modules" / TOKEN_ARTIFACT),
        }
