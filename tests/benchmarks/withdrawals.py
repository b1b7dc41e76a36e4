"""Withdrawals completed per second, and latency from POST to broadcast and to completion,
for N concurrent ETH withdrawals through the whole platform over HTTP; beside a bare
Temporal workflow running the same number of no-op activities, in the same run.

The platform runs as in the end-to-end tests (tests/e2e/harness.py): its processes on
the real stack against a fresh PostgreSQL database, with a miner thread making one block
a second. The hot wallet is funded, clients get ETH deposits and are credited; then all
withdrawals are POSTed at once (a thread pool) and followed in the operations tables
until every one has ended (or nothing changed for --stall seconds). Latencies are taken
from the client-side POST start to the `broadcast` and `completed` steps' timestamps
(operation_steps.at), both UTC on this machine. Throughput is withdrawals / (first POST
start to last completion).

The baseline is a workflow defined here that runs, one after another, as many no-op
activities as the withdrawal saga's happy path (reserve, decide, mark_approved, send,
chain_status once, complete), started N at a time on a worker inside this process.

Needs the stack. Run: .venv/bin/python -m tests.benchmarks.withdrawals
    [--withdrawals 200] [--clients 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import httpx
import psycopg
from eth_account import Account
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from adapters.sqldb import Conn, SqlDatabase
from adapters.temporal import connect
from services.settings import PlatformSettings
from tests.benchmarks.platform import exit_now, flagged, scratch_platform, stack_settings
from tests.e2e.conftest import ETH, address, credited, fund_hot_wallet, new_client
from tests.e2e.harness import ETH_DEPTH, Running, post

# The withdrawal saga's happy path (sagas/withdrawal/workflows.py): reserve, decide,
# mark_approved, send, chain_status (at least once), complete.
SAGA_ACTIVITIES = 6
AMOUNT = "0.001"  # ETH per withdrawal, a decimal string as the API takes it
DEPOSIT = 1 * ETH  # per client, far more than its withdrawals need
ENDED = ("completed", "failed", "rejected", "expired")
T = TypeVar("T")


# --- the bare Temporal baseline -------------------------------------------------------
@activity.defn(name="bench.noop")
async def noop() -> None:
    return None


@workflow.defn(name="BenchNoopSaga")
class NoopSaga:
    @workflow.run
    async def run(self, activities: int) -> int:
        for _ in range(activities):
            await workflow.execute_activity(noop, start_to_close_timeout=timedelta(seconds=30))
        return activities


@dataclass
class Figures:
    count: int
    ok: int
    elapsed: float  # first start to last completion, seconds
    latencies: dict[str, list[float]]  # name -> seconds per item that got there


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


async def _baseline(settings: PlatformSettings, n: int, activities: int) -> Figures:
    client: Client = await connect(
        settings.temporal_address, settings.temporal_namespace, settings.temporal_transport()
    )
    queue = f"bench-noop-{uuid.uuid4().hex[:8]}"
    worker = Worker(
        client,
        task_queue=queue,
        workflows=[NoopSaga],
        activities=[noop],
        # Defined in __main__: the sandbox would re-import this script per workflow.
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    latencies: list[float] = []

    async def one(i: int) -> None:
        began = time.perf_counter()
        done = await client.execute_workflow(
            NoopSaga.run,
            activities,
            id=f"bench-noop-{queue}-{i}",
            task_queue=queue,
        )
        assert done == activities
        latencies.append(time.perf_counter() - began)

    async with worker:
        began = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - began
    return Figures(n, len(latencies), elapsed, {"start->complete": latencies})


# --- the platform ------------------------------------------------------------------------
@dataclass
class Request:
    client_id: str
    http: httpx.Client
    key: str
    destination: str
    started: datetime | None = None
    answered: float | None = None  # seconds the POST took
    status: int | None = None
    body: str = ""

    @property
    def operation_id(self) -> str:
        return f"wd:{self.client_id}:{self.key}"


def _setup_clients(run: Running, clients: int) -> list[tuple[str, httpx.Client]]:
    made = [new_client(run, "bench") for _ in range(clients)]
    for client_id, _ops, http in made:
        run.faucet.fund_eth(address(http, client_id, "ETH"), DEPOSIT)
    for client_id, _ops, http in made:
        credited(run, http, client_id, {"ETH": DEPOSIT})
    return [(client_id, http) for client_id, _ops, http in made]


def _post(req: Request) -> None:
    body = {"asset": "ETH", "amount": AMOUNT, "destination": req.destination}
    req.started = datetime.now(UTC)
    began = time.perf_counter()
    try:
        reply = post(req.http, f"/v1/clients/{req.client_id}/withdrawals", body, req.key)
        req.status, req.body = reply.status_code, reply.text
    except httpx.HTTPError as exc:
        req.status, req.body = -1, repr(exc)
    req.answered = time.perf_counter() - began


def _steps(conn: Conn, ids: list[str]) -> dict[str, dict[str, datetime]]:
    found: dict[str, dict[str, datetime]] = {i: {} for i in ids}
    rows = conn.all(
        "select operation_id, step, at from operation_steps "
        "where operation_id like ? and step in ('broadcast', 'completed')",
        ("wd:bench-%",),
    )
    for op_id, step, at in rows:
        if op_id in found:
            when = Conn.read_time(at)
            assert when is not None
            found[op_id][step] = when
    return found


def _read(db: SqlDatabase, query: Callable[[Conn], T], attempts: int = 60) -> T:
    """A read, retried while PostgreSQL refuses connections (too many clients)."""
    for attempt in range(attempts):
        try:
            with db.tx() as conn:
                return query(conn)
        except psycopg.OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(1)
    raise AssertionError("unreachable")


def _withdrawals(
    run: Running,
    pairs: list[tuple[str, httpx.Client]],
    n: int,
    threads: int,
    timeout: float,
    stall: float,
) -> tuple[Figures, list[Request], Counter[str], str]:
    requests = [
        Request(
            client_id=pairs[i % len(pairs)][0],
            http=pairs[i % len(pairs)][1],
            key=f"bench-{uuid.uuid4().hex}",
            destination=Account.create().address,
        )
        for i in range(n)
    ]
    # Connected before the burst: under load the platform's processes may take every
    # connection PostgreSQL allows, and this one is kept (one per thread) once made.
    db = SqlDatabase(run.db_url)
    _read(db, lambda conn: conn.one("select 1"))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(_post, requests))
    accepted = [r for r in requests if r.status == 202]
    ids = [r.operation_id for r in accepted]
    wanted = set(ids)
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    changed = time.monotonic()
    while True:
        before = states
        rows = _read(
            db, lambda conn: conn.all("select id, state from operations where kind = 'withdrawal'")
        )
        states = {str(i): str(s) for i, s in rows if i in wanted}
        now = time.monotonic()
        if states != before:
            changed = now
        if all(states.get(i) in ENDED for i in ids):
            stop = "all ended"
            break
        if now > deadline:
            stop = f"gave up after {timeout:.0f} s"
            break
        if now - changed > stall:
            stop = f"gave up: no operation changed state for {stall:.0f} s"
            break
        time.sleep(0.5)
    steps = _read(db, lambda conn: _steps(conn, ids))
    to_broadcast: list[float] = []
    to_completed: list[float] = []
    completions: list[datetime] = []
    for r in accepted:
        assert r.started is not None
        at = steps[r.operation_id]
        if "broadcast" in at:
            to_broadcast.append((at["broadcast"] - r.started).total_seconds())
        if "completed" in at:
            to_completed.append((at["completed"] - r.started).total_seconds())
            completions.append(at["completed"])
    first = min(r.started for r in requests if r.started is not None)
    elapsed = (max(completions) - first).total_seconds() if completions else math.nan
    answered = [r.answered for r in requests if r.answered is not None]
    ended = Counter(states.get(i, "missing") for i in ids)
    ended.update(f"HTTP {r.status}" for r in requests if r.status != 202)
    figures = Figures(
        n,
        len(to_completed),
        elapsed,
        {
            "POST answered": answered,
            "POST->broadcast": to_broadcast,
            "POST->completed": to_completed,
        },
    )
    return figures, requests, ended, stop


def _saga_activity_counts(settings: PlatformSettings, ids: list[str]) -> Counter[int]:
    """How many activities each withdrawal saga actually scheduled (from its history)."""

    async def count() -> Counter[int]:
        client = await connect(
            settings.temporal_address, settings.temporal_namespace, settings.temporal_transport()
        )
        sem = asyncio.Semaphore(20)

        async def one(wid: str) -> int:
            async with sem:
                history = await client.get_workflow_handle(wid).fetch_history()
            return sum(
                1 for e in history.events if e.HasField("activity_task_scheduled_event_attributes")
            )

        return Counter(await asyncio.gather(*(one(w) for w in ids)))

    return asyncio.run(count())


def _step_gaps(url: str, ids: list[str]) -> dict[str, tuple[float, float, int]]:
    """Where the time goes: per step of the saga's timeline, the time since the step
    before it (p50, p99, n), from operation_steps."""
    with SqlDatabase(url).tx() as conn:
        rows = conn.all(
            "select operation_id, step, at from operation_steps where operation_id in "
            f"({','.join('?' * len(ids))}) order by operation_id, at",
            tuple(ids),
        )
    gaps: dict[str, list[float]] = {}
    last: dict[str, datetime] = {}
    for op, step, at in rows:
        moment = at if isinstance(at, datetime) else datetime.fromisoformat(str(at))
        name = str(step).split(":", 1)[0]
        if op in last:
            gaps.setdefault(name, []).append((moment - last[op]).total_seconds())
        last[op] = moment
    return {name: (percentile(v, 50), percentile(v, 99), len(v)) for name, v in gaps.items()}


async def _terminate_leftovers(settings: PlatformSettings, queue: str) -> None:
    """Sagas still open once the platform is down (a run that gave up) are ended, so
    they do not stay open on the shared Temporal server with no worker."""
    client = await connect(
        settings.temporal_address, settings.temporal_namespace, settings.temporal_transport()
    )
    query = f"TaskQueue = '{queue}' AND ExecutionStatus = 'Running'"
    async for wf in client.list_workflows(query):
        handle = client.get_workflow_handle(wf.id, run_id=wf.run_id)
        await handle.terminate("withdrawals benchmark over")


def _row(label: str, figures: Figures, name: str, rate: str) -> str:
    values = figures.latencies.get(name, [])
    p50, p99 = percentile(values, 50), percentile(values, 99)
    return f"  {label:<44}{rate:>12}{p50:>10.2f}{p99:>10.2f}{len(values):>7}"


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--withdrawals", type=int, default=200, help="concurrent withdrawals")
    parser.add_argument("--clients", type=int, default=20, help="clients they are spread over")
    parser.add_argument("--threads", type=int, default=50, help="POSTs in flight at once")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for all")
    parser.add_argument(
        "--stall", type=float, default=180, help="give up when nothing changed for this long"
    )
    parser.add_argument(
        "--lanes", type=int, default=4, help="hot wallet lanes (CUSTODY_ETH_HOT_LANES)"
    )
    args = parser.parse_args()
    settings = stack_settings()
    # A SIGTERM unwinds like Ctrl-C, so the platform is stopped and the database dropped.
    signal.signal(signal.SIGTERM, _terminated)
    with scratch_platform(settings, "withdrawals", eth_hot_lanes=str(args.lanes)) as run:
        url, workdir = run.db_url, run.workdir
        began = time.perf_counter()
        run.up()
        fund_hot_wallet(run)
        pairs = _setup_clients(run, args.clients)
        setup = time.perf_counter() - began
        platform, requests, ended, stop = _withdrawals(
            run, pairs, args.withdrawals, args.threads, args.timeout, args.stall
        )
        accepted = [r.operation_id for r in requests if r.status == 202]
        activities = _saga_activity_counts(settings, accepted)
        steps = _step_gaps(url, accepted)
        baseline = asyncio.run(_baseline(settings, args.withdrawals, SAGA_ACTIVITIES))
    with contextlib.suppress(Exception):
        asyncio.run(_terminate_leftovers(settings, run.env["CUSTODY_SAGA_TASK_QUEUE"]))

    n = args.withdrawals
    print(
        f"{n} concurrent ETH withdrawals of {AMOUNT} over {args.clients} clients "
        f"({args.threads} POSTs in flight, {args.lanes} hot wallet lanes); "
        f"platform set up in {setup:.0f} s"
    )
    print(f"  states when the wait ended ({stop}): {dict(ended)}")
    for r in [r for r in requests if r.status != 202][:5]:
        print(f"  refused: HTTP {r.status} {r.body[:200]}")
    print(f"{'':<46}{'per second':>12}{'p50 s':>10}{'p99 s':>10}{'n':>7}")
    rate = f"{platform.ok / platform.elapsed:.2f}" if platform.elapsed > 0 else "-"
    print(f"platform ({platform.ok}/{n} completed in {platform.elapsed:.1f} s)")
    print(_row("POST answered (202, state so far)", platform, "POST answered", ""))
    print(_row("POST -> broadcast", platform, "POST->broadcast", ""))
    print(_row("POST -> completed (withdrawals completed/s)", platform, "POST->completed", rate))
    base_rate = f"{baseline.ok / baseline.elapsed:.2f}"
    print(
        f"bare Temporal ({baseline.ok}/{n} workflows of {SAGA_ACTIVITIES} no-op activities "
        f"in {baseline.elapsed:.1f} s)"
    )
    print(_row("start -> complete (workflows/s)", baseline, "start->complete", base_rate))
    spread = ", ".join(f"{k} activities: {v}" for k, v in sorted(activities.items()))
    print("time since the step before, per step of the withdrawals' timelines (p50 / p99 s):")
    for name, (p50, p99, count) in steps.items():
        print(f"  {name:<24} {p50:8.2f} {p99:8.2f} {count:6d}")
    print("notes:")
    print(f"  - sagas by activities scheduled (from their histories): {spread}")
    print(
        f"  - completion waits for {ETH_DEPTH} confirmations on a chain mined at 1 block/s "
        f"(the harness's miner), so POST -> completed includes ~{ETH_DEPTH} s of block time."
    )
    print(
        "  - send also runs a signing workflow on the signer's queue, and the withdrawals "
        f"share the hot wallet's {args.lanes} nonce rows (lanes); the baseline has neither."
    )
    print(
        "  - the baseline ran after the withdrawals, on the same Temporal server, with the "
        "platform still up; its worker is in this process (async activities)."
    )
    print(f"  - {flagged(workdir)}")
    # The figure issue 13's target is about, last: platform withdrawals/s over bare
    # workflows/s (same activities, same run, same machine).
    if platform.elapsed > 0 and baseline.elapsed > 0 and baseline.ok > 0:
        ratio = (platform.ok / platform.elapsed) / (baseline.ok / baseline.elapsed)
        print(f"ratio {ratio:.2f}")
    else:
        print("ratio -")


if __name__ == "__main__":
    main()
    exit_now()
