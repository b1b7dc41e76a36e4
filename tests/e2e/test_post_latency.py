"""No POST waits on a saga: under load (20 concurrent withdrawals and 20 trades, with
the other POSTs among them) every POST route answers with the state so far and where to
poll (202 and Location; a replay 200 with the same resource), within SAGA_BOUND at p99:
far less than any saga takes (a withdrawal's steps to broadcast take several seconds
with the chain's polling). The speed target (1 s at p99 under this load, decision 0018)
is measured by tests/benchmarks/post_latency.py beside a baseline in the same run, not
here (decision 0031): on these 2-core machines it sits at the limit (0.8 to 1.8 s)."""

from __future__ import annotations

import math
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from eth_account import Account

from sagas.intents import Intent, sign_intent
from tests.e2e.conftest import ETH, address, credited, until_state
from tests.e2e.harness import Running, post, wait_for
from tests.e2e.trading import banked_client, get_trade

EUR = 100  # cents
N = 20
# A POST that waited on a saga (its next step's activity, the chain) would take longer.
SAGA_BOUND = 5.0  # seconds
# No other platform starts while this module's bursts run (tests/e2e/conftest.py): seen
# in CI, a trade's quote expired under that load (POST accept 422).
PLATFORM_QUIET = True


def p99(samples: list[float]) -> float:
    ranked = sorted(samples)
    return ranked[math.ceil(0.99 * len(ranked)) - 1]  # nearest rank: the max below 100


class Timed:
    """POSTs timed per route (the path with its ids replaced by the route's names)."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = defaultdict(list)
        self.replies: dict[str, list[httpx.Response]] = defaultdict(list)

    def post(
        self, route: str, http: httpx.Client, path: str, body: Any, key: str | None = None
    ) -> httpx.Response:
        began = time.perf_counter()
        reply = post(http, path, body, key)
        self.seconds[route].append(time.perf_counter() - began)
        self.replies[route].append(reply)
        return reply


def test_no_post_waits_on_a_saga_under_load(run: Running) -> None:
    client_id, ops, client, _iban = banked_client(run, 10_000 * EUR, "lat")
    run.faucet.fund_eth(address(client, client_id, "ETH"), ETH)
    credited(run, client, client_id, {"ETH": ETH})
    # Every withdrawal waits for two operators: the approvals are POSTs to time too.
    run.govern(ops.put(f"/v1/clients/{client_id}/policies/ETH", json={"approval_threshold": "0"}))
    alice, bob = run.http("alice", "operator"), run.http("bob", "operator")
    t = Timed()
    wd = f"/v1/clients/{client_id}/withdrawals"
    tr = f"/v1/clients/{client_id}/trades"

    def withdraw(i: int) -> httpx.Response:
        body = {"asset": "ETH", "amount": "0.01", "destination": Account.create().address}
        return t.post("POST withdrawals", client, wd, body, f"lat-wd-{i}")

    def buy(i: int) -> httpx.Response:
        body = {"side": "buy", "asset": "BTC", "quantity": "0.001", "auto_accept": i % 2 == 0}
        return t.post("POST trades", client, tr, body, f"lat-tr-{i}")

    def others(i: int) -> None:
        new = f"lat-{uuid.uuid4().hex[:8]}"
        t.post("POST clients", ops, "/v1/clients", {"client_id": new, "name": new})
        t.post("POST deposit-addresses", client, f"/v1/clients/{client_id}/deposit-addresses",
               {"asset": ("BTC", "ETH", "CTUSD")[i % 3]})  # fmt: skip
        if i < 3:
            t.post("POST settlements", ops, "/v1/settlements", {}, f"lat-{uuid.uuid4().hex[:8]}")

    # 1. The load: 20 withdrawals and 20 trades at once, the other POSTs among them.
    with ThreadPoolExecutor(max_workers=2 * N + 5) as pool:
        withdrawals = [pool.submit(withdraw, i) for i in range(N)]
        trades = [pool.submit(buy, i) for i in range(N)]
        extra = [pool.submit(others, i) for i in range(5)]
        wd_ids = [f.result().json()["operation_id"] for f in withdrawals]
        tr_ids = [f.result().json()["operation_id"] for f in trades]
        for f in extra:
            f.result()

    # 2. While those sagas run: replays, approvals, accepts and decisions, at once.
    manual = tr_ids[1::2]

    def quoted(op_id: str) -> bool:
        return bool(get_trade(client, op_id)["state"] == "quoted")

    for op_id in wd_ids:
        until_state(client, op_id, "awaiting_approval", timeout=120)

    def signed(op_id: str, who: httpx.Client) -> dict[str, Any]:
        """The operator's signed approval, made before the timed waves: an operator reads
        and signs the intent at its own pace; the POST that sends it is what is timed."""
        name = "alice" if who is alice else "bob"
        shown = who.get(f"/v1/withdrawals/{op_id}/intent").json()
        intent = Intent.model_validate(shown["intent"], strict=False)
        return sign_intent(intent, run.operator_key(name)).model_dump()

    approvals = {(op_id, who): signed(op_id, who) for op_id in wd_ids for who in (alice, bob)}

    # Quotes live 10 s at the providers: accepted at once once all are in.
    wait_for("the manual trades' quotes", lambda: all(quoted(i) for i in manual), timeout=120)

    def approve(op_id: str, who: httpx.Client) -> None:
        route = "POST approvals" if who is alice else "POST approvals (quorum)"
        t.post(route, who, f"/v1/withdrawals/{op_id}/approvals", approvals[(op_id, who)])

    def second_wave(i: int) -> None:
        approve(wd_ids[i], alice)
        if i < len(manual):
            t.post("POST accept", client, f"/v1/trades/{manual[i]}/accept", {})
        if i < 5:
            decision = {"action": "keep_waiting"}
            t.post("POST decisions", ops, f"/v1/withdrawals/{wd_ids[i]}/decisions", decision)
        if i < 5:  # a withdrawal's key again with another body: 409; a trade's: a replay
            body = {"asset": "ETH", "amount": "0.02", "destination": Account.create().address}
            t.post("POST withdrawals (conflict)", client, wd, body, f"lat-wd-{i}")
            again = {"side": "buy", "asset": "BTC", "quantity": "0.001", "auto_accept": True}
            t.post("POST trades (replay)", client, tr, again, f"lat-tr-{2 * i}")

    with ThreadPoolExecutor(max_workers=2 * N) as pool:
        list(pool.map(second_wave, range(N)))
        list(pool.map(lambda op_id: approve(op_id, bob), wd_ids))  # completes the quorum

    # The latencies first: the point of the test.
    report = {route: (len(s), round(p99(s), 3), round(max(s), 3)) for route, s in t.seconds.items()}
    print("route: (requests, p99 s, max s)", report)
    slow = {route: r for route, r in report.items() if r[1] >= SAGA_BOUND}
    assert not slow, f"p99 of {SAGA_BOUND} s exceeded: {slow}"
    assert len(report) == 11, report  # every POST route (and the replays) was timed

    # Then what they answered: the state so far and where to poll.
    for route in ("POST withdrawals", "POST trades", "POST settlements"):
        for reply in t.replies[route]:
            assert reply.status_code == 202, reply.text
            assert reply.headers["Location"].startswith("/v1/"), reply.headers
            polled = client if route != "POST settlements" else ops
            assert polled.get(reply.headers["Location"]).status_code == 200
    for reply in t.replies["POST trades (replay)"]:
        assert reply.status_code == 200, reply.text  # the same resource, as it is now
        assert reply.json()["operation_id"] in tr_ids
    statuses = {
        route: {r.status_code for r in replies}
        for route, replies in t.replies.items()
        if route not in ("POST withdrawals", "POST trades", "POST settlements")
    }
    # An approval is counted by the API at once: 200 with the tally.
    for route in ("POST approvals", "POST approvals (quorum)"):
        odd = [r.text for r in t.replies[route] if r.status_code != 200]
        assert statuses.pop(route) == {200}, odd
    assert statuses == {
        "POST clients": {201},
        "POST deposit-addresses": {201},
        "POST accept": {200},
        "POST decisions": {202},
        "POST withdrawals (conflict)": {409},
        "POST trades (replay)": {200},
    }, statuses
    done = [until_state(client, op_id, "completed", "failed") for op_id in wd_ids]
    assert {d["state"] for d in done} == {"completed"}
