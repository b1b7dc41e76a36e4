"""Which SQLite pragmas the Temporal dev server accepts, and what each costs.

Starts throwaway dev servers (own ports, own temp DB files) from the installed
`temporal` binary, runs N smoke workflows through each, prints workflows/s, and
checks the DB file survives a restart. Run:
    .venv/bin/python -m tests.benchmarks.temporal_sqlite_pragmas
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from adapters.temporal import TemporalTransport, connect
from infra.services.temporal import temporal_binary
from sagas.smoke import TASK_QUEUE, SmokeInput, SmokeResult
from services.worker.bootstrap import build_workers

CANDIDATES: dict[str, list[str]] = {
    "default pragmas": [],
    "journal_mode=wal": ["journal_mode=wal"],
    "journal_mode=wal, synchronous=normal": ["journal_mode=wal", "synchronous=normal"],
    # SQLite ignores pragmas it does not know; this row shows the server does not check.
    "no_such_pragma=1": ["no_such_pragma=1"],
}


def _start(db: Path, port: int, pragmas: list[str], log: Path) -> subprocess.Popen[bytes]:
    cmd = [
        str(temporal_binary()),
        "server",
        "start-dev",
        "--headless",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--db-filename",
        str(db),
        "--log-level",
        "error",
    ]
    for p in pragmas:
        cmd += ["--sqlite-pragma", p]
    return subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _healthy(port: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run(
            [
                str(temporal_binary()),
                "operator",
                "cluster",
                "health",
                "--address",
                f"127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
        )
        if "SERVING" in r.stdout:
            return True
        time.sleep(0.3)
    return False


async def _drive(port: int, n: int) -> tuple[float, int]:
    client = await connect(f"127.0.0.1:{port}", "default", TemporalTransport())
    workers = build_workers(client)
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        began = time.monotonic()
        handles = [
            await client.start_workflow(
                "Smoke",
                SmokeInput(message=f"m{i}"),
                id=f"bench-{uuid.uuid4().hex}",
                task_queue=TASK_QUEUE,
                result_type=SmokeResult,
            )
            for i in range(n)
        ]
        results = await asyncio.gather(*(h.result() for h in handles))
        elapsed = time.monotonic() - began
        return elapsed, len(results)
    finally:
        for w in workers:
            await w.shutdown()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _count_after_restart(port: int) -> int:
    client = await connect(f"127.0.0.1:{port}", "default", TemporalTransport())
    return (await client.count_workflows("WorkflowType='Smoke'")).count


def _journal_mode(db: Path) -> str:
    # WAL is recorded in the database file itself, so it can be read back afterwards.
    with sqlite3.connect(db) as conn:
        return str(conn.execute("pragma journal_mode").fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=200, help="workflows per configuration")
    parser.add_argument("--port", type=int, default=27233)
    args = parser.parse_args()
    print(f"temporal {temporal_binary()}; {args.n} smoke workflows (1 activity each) per run")
    print(f"{'pragmas':<40}{'started':<9}{'db journal':<12}{'wf/s':>7}{'kept after restart':>20}")
    for label, pragmas in CANDIDATES.items():
        with tempfile.TemporaryDirectory() as tmp:
            db, log = Path(tmp) / "t.db", Path(tmp) / "server.log"
            server = _start(db, args.port, pragmas, log)
            try:
                if not _healthy(args.port, timeout=20):
                    print(
                        f"{label:<40}{'no':<10}{'-':>8}{'-':>22}   "
                        f"({log.read_text()[-160:].strip()!r})"
                    )
                    continue
                elapsed, done = asyncio.run(_drive(args.port, args.n))
                server.terminate()
                server.wait(30)
                server = _start(db, args.port, pragmas, log)
                kept = asyncio.run(_count_after_restart(args.port)) if _healthy(args.port) else -1
                journal = _journal_mode(db)
                print(
                    f"{label:<40}{'yes':<9}{journal:<12}{done / elapsed:>7.1f}"
                    f"{f'{kept}/{done}':>20}"
                )
            finally:
                server.terminate()
                server.wait(30)


if __name__ == "__main__":
    main()
