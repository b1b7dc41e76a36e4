"""POST latency under load (decision 0018's target: every POST within 1 s at p99), beside
the same POSTs made one at a time on the same platform, in the same run.

The platform runs as in the end-to-end tests on a scratch database. A client is banked,
funded with ETH and given a policy that needs two approvals. The baseline: a few
withdrawals and trades POSTed one after another on the idle platform. Then the load:
20 withdrawals and 20 trades at once (tests/e2e/test_post_latency.py's first wave),
`--waves` times with a pause between; the first wave meets processes that have served
only the baseline. Prints p50/p99/max per route and wave beside the baseline, and
whether the target held.

Needs the stack. Run: .venv/bin/python -m tests.benchmarks.post_latency [--waves 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from eth_account import Account

from tests.benchmarks.platform import scratch_platform, stack_settings
from tests.e2e.conftest import ETH, address, credited, fund_hot_wallet
from tests.e2e.harness import post
from tests.e2e.trading import banked_client

EUR = 100
TARGET = 1.0  # s, p99


def p99(samples: list[float]) -> float:
    ranked = sorted(samples)
    return ranked[math.ceil(0.99 * len(ranked)) - 1]


def figures(samples: list[float]) -> str:
    return (
        f"p50 {statistics.median(samples):.3f}  p99 {p99(samples):.3f}  "
        f"max {max(samples):.3f}  (n={len(samples)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--waves", type=int, default=3)
    parser.add_argument("--concurrent", type=int, default=20, help="of each route per wave")
    args = parser.parse_args()
    with scratch_platform(stack_settings(), "latency", approval_ttl_seconds="3600") as run:
        run.up()
        fund_hot_wallet(run)
        client_id, ops, client, _iban = banked_client(run, 100_000 * EUR, "bench")
        run.faucet.fund_eth(address(client, client_id, "ETH"), 10 * ETH)
        credited(run, client, client_id, {"ETH": 10 * ETH})
        run.govern(
            ops.put(f"/v1/clients/{client_id}/policies/ETH", json={"approval_threshold": "0"})
        )
        wd, tr = f"/v1/clients/{client_id}/withdrawals", f"/v1/clients/{client_id}/trades"

        def withdraw(key: str) -> float:
            body = {"asset": "ETH", "amount": "0.001", "destination": Account.create().address}
            began = time.perf_counter()
            reply = post(client, wd, body, key)
            assert reply.status_code == 202, reply.text
            return time.perf_counter() - began

        def buy(key: str) -> float:
            body = {"side": "buy", "asset": "BTC", "quantity": "0.001", "auto_accept": False}
            began = time.perf_counter()
            reply = post(client, tr, body, key)
            assert reply.status_code == 202, reply.text
            return time.perf_counter() - began

        base_wd = [withdraw(f"base-wd-{i}") for i in range(5)]
        base_tr = [buy(f"base-tr-{i}") for i in range(5)]
        print(f"baseline, one at a time:  withdrawals {figures(base_wd)}")
        print(f"                          trades      {figures(base_tr)}")
        worst = 0.0
        n = args.concurrent
        for wave in range(args.waves):
            with ThreadPoolExecutor(max_workers=2 * n) as pool:
                w = [pool.submit(withdraw, f"w{wave}-{i}") for i in range(n)]
                t = [pool.submit(buy, f"t{wave}-{i}") for i in range(n)]
                ws, ts = [f.result() for f in w], [f.result() for f in t]
            worst = max(worst, p99(ws), p99(ts))
            print(f"wave {wave}, {n}+{n} at once: withdrawals {figures(ws)}")
            print(f"                          trades      {figures(ts)}")
            time.sleep(15)  # the wave's sagas run on
        verdict = "met" if worst < TARGET else "NOT met"
        print(f"target p99 < {TARGET} s under load: {verdict} (worst wave p99 {worst:.3f} s)")


if __name__ == "__main__":
    main()
