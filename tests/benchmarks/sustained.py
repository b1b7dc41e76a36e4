"""A sustained load: ETH withdrawals POSTed at a steady rate for several minutes through
the whole platform (run as in tests/benchmarks/withdrawals.py), to find whether it keeps
up: the backlog (accepted, not ended) sampled every 10 s should stay flat.

Prints, per minute, the offered and completed rates and the backlog; the processes' RSS
at start and end; Temporal actions per withdrawal (from the histories of a sample:
workflow and activity tasks, timers, markers, signals); the fee paid per payment (from
the network-fees account); and a verdict: kept up if the backlog's last samples are no
higher than a few seconds of offered load. Run it at several rates to find the highest
that keeps up (issue 13: report that rate).

Needs the stack. Run: .venv/bin/python -m tests.benchmarks.sustained
    [--rate 1.0] [--minutes 10] [--clients 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from eth_account import Account

from adapters.sqldb import SqlDatabase
from adapters.temporal import connect
from sagas import accounts
from services.settings import PlatformSettings
from tests.benchmarks.platform import exit_now, flagged, scratch_platform, stack_settings
from tests.benchmarks.withdrawals import (
    AMOUNT,
    ENDED,
    Request,
    _post,
    _read,
    _setup_clients,
    _terminate_leftovers,
    _terminated,
)
from tests.e2e.conftest import fund_hot_wallet
from tests.e2e.harness import Running

SAMPLE_EVERY = 10.0  # seconds between backlog samples
HISTORIES = 40  # withdrawals whose histories are read for the actions count


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _rss(run: Running) -> dict[str, float]:
    return {name: _rss_mib(proc.pid) for name, proc in sorted(run.procs.items())}


def _actions(settings: PlatformSettings, ids: list[str]) -> tuple[Counter[str], int]:
    """Billable-style actions in these withdrawals' histories, by kind, and how many
    histories were read (every run of each, following continue-as-new)."""
    kinds = {
        "workflow_execution_started_event_attributes": "workflow started",
        "activity_task_scheduled_event_attributes": "activity",
        "marker_recorded_event_attributes": "marker (local activity or patch)",
        "timer_started_event_attributes": "timer",
        "workflow_execution_signaled_event_attributes": "signal",
        "workflow_execution_update_accepted_event_attributes": "update",
        "start_child_workflow_execution_initiated_event_attributes": "child workflow",
        "workflow_task_completed_event_attributes": "workflow task",
    }

    async def count() -> tuple[Counter[str], int]:
        client = await connect(
            settings.temporal_address, settings.temporal_namespace, settings.temporal_transport()
        )
        total: Counter[str] = Counter()
        for wid in ids:
            history = await client.get_workflow_handle(wid).fetch_history()
            for event in history.events:
                name = kinds.get(event.WhichOneof("attributes") or "")
                if name is not None:
                    total[name] += 1
        return total, len(ids)

    return asyncio.run(count())


def _fee_per_payment(db: SqlDatabase, completed: int) -> float:
    if not completed:
        return float("nan")
    row = _read(
        db,
        lambda c: c.one(
            "select debits_posted from ledger_accounts where id = ?",
            (accounts.network_fees("ETH"),),
        ),
    )
    return int(row[0]) / completed if row else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=1.0, help="withdrawals POSTed per second")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--drain", type=float, default=300, help="seconds to let it finish")
    parser.add_argument("--lanes", type=int, default=4, help="hot wallet lanes")
    args = parser.parse_args()
    settings = stack_settings()
    signal.signal(signal.SIGTERM, _terminated)
    samples: list[tuple[float, int, int, int]] = []  # (t, posted, ended, backlog)
    requests: list[Request] = []
    with scratch_platform(settings, "sustained", eth_hot_lanes=str(args.lanes)) as run:
        url, workdir = run.db_url, run.workdir
        run.up()
        fund_hot_wallet(run)
        pairs = _setup_clients(run, args.clients)
        rss_start = _rss(run)
        db = SqlDatabase(url)
        _read(db, lambda c: c.one("select 1"))
        stop_posting = threading.Event()
        duration = args.minutes * 60
        began = time.monotonic()

        def offer(pool: ThreadPoolExecutor) -> None:
            i = 0
            while not stop_posting.is_set():
                due = began + i / args.rate
                if due - began >= duration:
                    break
                time.sleep(max(0.0, due - time.monotonic()))
                client_id, http = pairs[i % len(pairs)]
                req = Request(
                    client_id, http, f"bench-{uuid.uuid4().hex}", Account.create().address
                )
                requests.append(req)
                pool.submit(_post, req)
                i += 1

        with ThreadPoolExecutor(max_workers=32) as pool:
            poster = threading.Thread(target=offer, args=(pool,), daemon=True)
            poster.start()
            deadline = began + duration + args.drain
            while True:
                time.sleep(SAMPLE_EVERY)
                now = time.monotonic() - began
                rows = _read(
                    db,
                    lambda c: c.all("select state from operations where kind = 'withdrawal'"),
                )
                ended = sum(1 for (state,) in rows if state in ENDED)
                accepted = len(rows)
                samples.append((now, len(requests), ended, accepted - ended))
                if not poster.is_alive() and accepted and ended == accepted:
                    break
                if began + now > deadline:
                    break
            stop_posting.set()
        rss_end = _rss(run)
        states = Counter(
            str(s)
            for (s,) in _read(
                db, lambda c: c.all("select state from operations where kind = 'withdrawal'")
            )
        )
        completed = states.get("completed", 0)
        fee = _fee_per_payment(db, completed)
        done_ids = [
            str(i)
            for (i,) in _read(
                db,
                lambda c: c.all(
                    "select id from operations where kind = 'withdrawal' and state = 'completed' "
                    "order by id limit ?",
                    (HISTORIES,),
                ),
            )
        ]
        actions, read = _actions(settings, done_ids)
    with contextlib.suppress(Exception):
        asyncio.run(_terminate_leftovers(settings, run.env["CUSTODY_SAGA_TASK_QUEUE"]))

    print(
        f"sustained load: {args.rate:g} ETH withdrawals/s of {AMOUNT} offered for "
        f"{args.minutes:g} min over {args.clients} clients"
    )
    print(f"{'t (s)':>8}{'POSTed':>9}{'ended':>8}{'backlog':>9}{'ended/s (last 60 s)':>22}")
    for k, (t, posted, ended, backlog) in enumerate(samples):
        window = [s for s in samples[: k + 1] if s[0] >= t - 60]
        rate = (ended - window[0][2]) / (t - window[0][0]) if t > window[0][0] else 0.0
        print(f"{t:8.0f}{posted:9d}{ended:8d}{backlog:9d}{rate:22.2f}")
    offered_window = [s for s in samples if s[0] <= args.minutes * 60]
    tail = [s[3] for s in offered_window[-6:]]
    allowed = max(10.0, args.rate * 30)  # half a minute of offered load in flight
    kept_up = bool(tail) and max(tail) <= allowed
    print(f"final states: {dict(states)}")
    print(
        f"verdict: {'kept up' if kept_up else 'did NOT keep up'} at {args.rate:g}/s "
        f"(backlog over the last minute of offered load: {tail}, allowed <= {allowed:.0f})"
    )
    print("RSS (MiB) start -> end:")
    for proc, start in rss_start.items():
        print(f"  {proc:<24}{start:8.1f} -> {rss_end.get(proc, float('nan')):8.1f}")
    if read:
        per = ", ".join(f"{k}: {v / read:.1f}" for k, v in sorted(actions.items()))
        print(f"Temporal, per withdrawal (histories of {read} completed ones): {per}")
    print(f"fee paid per payment: {fee:,.0f} wei (ETH, no batching: one transfer each)")
    print(flagged(workdir))


if __name__ == "__main__":
    main()
    exit_now()
