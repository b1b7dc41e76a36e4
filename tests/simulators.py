"""Test helpers for the bank and liquidity simulators: open and fund accounts as the bank
would, set fault switches, read providers' orders."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from sagas.banking import make_iban

BIC = "SIMUDEFFXXX"


def new_iban() -> str:
    return make_iban("DE", f"5001051712{uuid.uuid4().int % 10**8:08d}")


def open_bank_account(url: str, iban: str, name: str = "test account") -> None:
    reply = httpx.put(
        f"{url}/v1/accounts/{iban}",
        json={"bic": BIC, "name": name, "currency": "EUR"},
        timeout=10,
    )
    assert reply.status_code in (200, 201), reply.text


def cash_in(url: str, iban: str, amount: int) -> None:
    reply = httpx.post(
        f"{url}/v1/accounts/{iban}/cash-in",
        json={"amount": amount, "end_to_end_id": f"cash-{uuid.uuid4().hex[:8]}"},
        headers={"Idempotency-Key": uuid.uuid4().hex},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text


def bank_account(url: str, iban: str) -> dict[str, Any]:
    reply = httpx.get(f"{url}/v1/accounts/{iban}", timeout=10)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def statement(url: str, iban: str, end_to_end_id: str | None = None) -> list[dict[str, Any]]:
    """The account's entries (the first 500; or all of one end-to-end id)."""
    params = {"end_to_end_id": end_to_end_id} if end_to_end_id else {}
    reply = httpx.get(f"{url}/v1/accounts/{iban}/statement", params=params, timeout=10)
    assert reply.status_code == 200, reply.text
    return list(reply.json()["entries"])


def set_faults(url: str, **switches: Any) -> None:
    """Fault switches of a simulator (latency_ms, fail_next, timeout_next, lose_next,
    reject_next, statement_lag_seconds, fill_skew_bps, operations); no arguments clears
    them."""
    reply = httpx.post(f"{url}/admin/faults", json=switches, timeout=10)
    assert reply.status_code == 200, reply.text


def lp_order(url: str, counterparty: str, client_order_id: str) -> dict[str, Any] | None:
    reply = httpx.get(f"{url}/v1/lp/{counterparty}/orders/{client_order_id}", timeout=10)
    if reply.status_code == 404:
        return None
    return dict(reply.json())


def lp_positions(url: str, counterparty: str) -> dict[str, dict[str, int]]:
    reply = httpx.get(f"{url}/v1/lp/{counterparty}/positions", timeout=10)
    assert reply.status_code == 200, reply.text
    return dict(reply.json()["positions"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def own_simulator(module: str, workdir: Path, *args: str, port: int = 0) -> Iterator[str]:
    """A simulator process of this checkout (`infra.simulators.bank` or `.liquidity`) on a
    free port with its own database, for the length of the block; yields its URL. For
    tests of switches or endpoints the stack's long-running simulators may predate, and
    whose fault switches no other test flips meanwhile."""
    port = port or free_port()
    name = module.rsplit(".", 1)[-1]
    log = (workdir / f"{name}-{port}.log").open("ab")
    db = str(workdir / f"{name}.db")
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "--port", str(port), "--db", db, *args],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{module} did not start (see {log.name})")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextmanager
def own_trading_simulators(
    workdir: Path, bank_port: int, lp_port: int, platform_cents: int = 10**9
) -> Iterator[None]:
    """A bank and a liquidity provider of this checkout, set up as `custody stack up` sets
    up the stack's (the platform's account, funded with `platform_cents` as a platform's
    client-money account would be; the providers' accounts funded at this bank, their
    deliveries on the stack's chains), on the given ports."""
    from infra.services.simulators import PLATFORM_IBAN, BankSim, LiquiditySim
    from infra.settings import StackSettings

    stack = StackSettings(bank_port=bank_port, liquidity_port=lp_port)
    lp = LiquiditySim(stack)
    chains = lp.command()[lp.command().index("--eth-rpc") :]
    with own_simulator("infra.simulators.bank", workdir, port=bank_port):
        BankSim(stack).bootstrap(lambda _line: None)
        cash_in(f"http://127.0.0.1:{bank_port}", PLATFORM_IBAN, platform_cents)
        with own_simulator("infra.simulators.liquidity", workdir, *chains, port=lp_port):
            lp.bootstrap(lambda _line: None)
            yield
