"""The reference core-banking system and liquidity provider (infra/simulators), run as
HTTP services of the stack from this repository's Python environment."""

from __future__ import annotations

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

    def ports(self) -> dict[str, int]:
        return {"http": self.s.liquidity_port}

    def bootstrap(self, say: Say) -> dict[str, str]:
        """The providers' fiat settlement accounts are at the simulated bank too."""
        bank = f"http://{self.s.host}:{self.s.bank_port}"
        names = []
        for name in ("lp-alpha", "lp-beta", "lp-gamma"):
            ssi = httpx.get(
                f"{self.base_url()}/v1/lp/{name}/settlement-instructions", timeout=10
            ).json()
            httpx.put(
                f"{bank}/v1/accounts/{ssi['iban']}",
                json={"bic": SIM_BIC, "name": f"{name} settlement", "currency": "EUR"},
                timeout=10,
            ).raise_for_status()
            names.append(name)
        return {"CUSTODY_LP_URL": self.base_url(), "CUSTODY_LP_COUNTERPARTIES": ",".join(names)}
