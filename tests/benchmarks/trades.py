"""Trades booked per second, and latency from quote to booked, for N concurrent buys
through the whole platform over HTTP (the bank and the providers are the stack's
simulators).

The platform runs as in the end-to-end tests (services/runner.py): its processes on the
real stack against a fresh PostgreSQL database. Clients get funded accounts at the bank;
then all buys (auto-accepted, 0.001 BTC each) are POSTed at once from a thread pool and
followed in the operations tables until each has ended. Quote-to-booked latency is from
a trade's last `quoted` step to its `booked` step (operation_steps.at, both written on
this machine); throughput is trades booked / (first POST start to last booked).

Needs the stack. Run: .venv/bin/python -m tests.benchmarks.trades [--trades 200] [--clients 20]
"""

from __future__ import annotations

import argparse
import math
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from adapters.sqldb import Conn, SqlDatabase
from tests.benchmarks.platform import scratch_platform, stack_settings
from tests.e2e.harness import post
from tests.simulators import BIC, cash_in, new_iban, open_bank_account

ENDED = ("completed", "rejected", "expired")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trades", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    settings = stack_settings()
    with scratch_platform(settings, "trades") as run:
        url = run.db_url
        run.up()
        ops = run.http("bench-ops", "operator")
        clients = []
        for i in range(args.clients):
            client_id = f"b{i}-{uuid.uuid4().hex[:6]}"
            assert (
                post(ops, "/v1/clients", {"client_id": client_id, "name": client_id}).status_code
                == 201
            )
            iban = new_iban()
            open_bank_account(settings.bank_url, iban, client_id)
            cash_in(settings.bank_url, iban, 10**9)
            run.govern(
                ops.put(f"/v1/clients/{client_id}/bank-account", json={"iban": iban, "bic": BIC})
            )
            clients.append((client_id, run.http(f"u-{client_id}", "client", client_id)))
        body = {"side": "buy", "asset": "BTC", "quantity": "0.001", "auto_accept": True}

        def buy(i: int) -> str | None:
            client_id, http = clients[i % len(clients)]
            try:
                reply = post(http, f"/v1/clients/{client_id}/trades", body)
            except Exception as exc:
                print(f"POST failed: {type(exc).__name__}")
                return None
            return str(reply.json()["operation_id"]) if reply.status_code in (200, 202) else None

        print(f"{args.trades} concurrent buys by {args.clients} clients ...", flush=True)
        started = datetime.now(UTC)
        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=64) as pool:
            ids = [i for i in pool.map(buy, range(args.trades)) if i is not None]
        db = SqlDatabase(url)
        states: Counter[str] = Counter()
        while time.monotonic() - began < args.timeout:
            with db.tx() as conn:
                rows = conn.all("select state from operations where kind = 'trade'")
            states = Counter(r[0] for r in rows)
            if sum(states[s] for s in ENDED) >= len(ids):
                break
            time.sleep(1)
        with db.tx() as conn:
            steps = conn.all(
                "select operation_id, step, at from operation_steps where operation_id in "
                "(select id from operations where kind = 'trade')"
            )
        quoted: dict[str, datetime] = {}
        booked: dict[str, datetime] = {}
        for op_id, step, at in steps:
            when = Conn.read_time(at)
            assert when is not None
            if step.split(":")[0] == "quoted":
                quoted[op_id] = max(quoted.get(op_id, when), when)
            elif step == "booked":
                booked[op_id] = when
        latencies = [(booked[o] - quoted[o]).total_seconds() for o in booked if o in quoted]
        last = max(booked.values()) if booked else started
        elapsed = (last - started).total_seconds()
        print(f"states: {dict(states)}")
        print(f"posted: {len(ids)} of {args.trades}")
        if latencies:
            print(
                f"booked {len(latencies)} trades in {elapsed:.1f} s: "
                f"{len(latencies) / elapsed:.2f} trades/s; quote-to-booked "
                f"p50 {percentile(latencies, 50):.2f} s, p99 {percentile(latencies, 99):.2f} s, "
                f"max {max(latencies):.2f} s"
            )


if __name__ == "__main__":
    main()
