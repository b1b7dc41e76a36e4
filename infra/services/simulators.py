"""The reference core-banking system and liquidity provider (infra/simulators), run as
HTTP services of the stack from this repository's Python environment."""

from __future__ import annotations

import json
import sys

import httpx

from infra.services.base import Say, Service
from sagas.banking import make_iban

# The platform's own account at the simulated bank: client money for trades is captured
# into it, sale proceeds are paid from it, and settlement pays providers from it.
PLATFORM_IBAN = make_iban("DE", "500105170000000900")
PLATFORM_BIC = "SIMUDEFFXXX"
SIM_BIC = PLATFORM_BIC


class _Simulator(Service):
    module: str
    version_text = "sim-1"  # versioned with this repository

    def is_installed(self) -> bool:
        return True  # it is this repository's code, in its environment

    def install(self, say: Say) -> None:
        return None

    def version(self) -> str:
        return self.version_text

    def port(self) -> int:
        return next(iter(self.ports().values()))

    def base_url(self) -> str:
        return f"http://{self.s.host}:{self.port()}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            self.module,
            "--host",
            self.s.host,
            "--port",
            str(self.port()),
            "--db",
            str(self.dir / f"{self.name}.sqlite3"),
        ]

    def healthy(self) -> bool:
        try:
            return httpx.get(self.base_url() + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


class BankSim(_Simulator):
    name = "bank"
    module = "infra.simulators.bank"

    def ports(self) -> dict[str, int]:
        return {"http": self.s.bank_port}

    def bootstrap(self, say: Say) -> dict[str, str]:
        reply = httpx.put(
            f"{self.base_url()}/v1/accounts/{PLATFORM_IBAN}",
            json={"bic": PLATFORM_BIC, "name": "Custody platform client money", "currency": "EUR"},
            timeout=10,
        )
        reply.raise_for_status()
        return {
            "CUSTODY_BANK_URL": self.base_url(),
            "CUSTODY_BANK_PLATFORM_IBAN": PLATFORM_IBAN,
            "CUSTODY_BANK_PLATFORM_BIC": PLATFORM_BIC,
        }


class LiquiditySim(_Simulator):
    name = "liquidity"
    module = "infra.simulators.liquidity"
    eth_account = 9  # anvil's unlocked dev account the providers deliver ETH from
    needs = ("anvil", "btcd", "bank")  # it reads the chains and the bank as it starts

    def ports(self) -> dict[str, int]:
        return {"http": self.s.liquidity_port}

    def command(self) -> list[str]:
        btcd = self.s.stack_dir / "btcd"
        return [
            *super().command(),
            "--eth-rpc",
            f"http://{self.s.host}:{self.s.anvil_port}",
            "--eth-account",
            str(self.eth_account),
            "--btc-rpc",
            f"http://{self.s.host}:{self.s.btcd_rpc_port}",
            "--btc-credentials",
            str(btcd / "rpc.json"),
            "--btc-faucet",
            str(btcd / "faucet.json"),
            "--bank-url",
            f"http://{self.s.host}:{self.s.bank_port}",
        ]

    def bootstrap(self, say: Say) -> dict[str, str]:
        """The providers' fiat accounts are at the simulated bank too, funded once; they
        take crypto at the dev chain's account and the test network's miner address."""
        bank = f"http://{self.s.host}:{self.s.bank_port}"
        eth = httpx.post(
            f"http://{self.s.host}:{self.s.anvil_port}",
            json={"jsonrpc": "2.0", "id": 1, "method": "eth_accounts", "params": []},
            timeout=10,
        ).json()["result"][self.eth_account]
        btc = json.loads((self.s.stack_dir / "btcd" / "faucet.json").read_text())["address"]
        names = []
        for name in ("lp-alpha", "lp-beta", "lp-gamma"):
            httpx.put(
                f"{self.base_url()}/admin/counterparties/{name}",
                json={"addresses": {"ETH": eth, "BTC": btc}},
                timeout=10,
            ).raise_for_status()
            ssi = httpx.get(
                f"{self.base_url()}/v1/lp/{name}/settlement-instructions", timeout=10
            ).json()
            httpx.put(
                f"{bank}/v1/accounts/{ssi['iban']}",
                json={"bic": SIM_BIC, "name": f"{name} settlement", "currency": "EUR"},
                timeout=10,
            ).raise_for_status()
            httpx.post(
                f"{bank}/v1/accounts/{ssi['iban']}/cash-in",
                json={"amount": 10**11, "end_to_end_id": f"fund-{name}"},
                headers={"Idempotency-Key": f"fund-{name}"},
                timeout=10,
            ).raise_for_status()
            names.append(name)
        return {"CUSTODY_LP_URL": self.base_url(), "CUSTODY_LP_COUNTERPARTIES": ",".join(names)}
