"""What the benchmarks that run the whole platform share: a scratch database on the
stack's PostgreSQL, the platform's processes against it, and their logs' flagged lines."""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from services.settings import PlatformSettings, stack_env_file
from tests.e2e.harness import Running

FLAGGED = (
    "Traceback",
    "ERROR",
    "WARNING",
    "CRITICAL",
    "too many clients",
    "Completing activity as failed",
)


def stack_settings() -> PlatformSettings:
    if not stack_env_file().exists():
        raise SystemExit("the stack is not up: run `make up` or `custody stack up`")
    return PlatformSettings.load()


@contextmanager
def scratch_platform(settings: PlatformSettings, tag: str, **overrides: str) -> Iterator[Running]:
    """The platform's processes (not started yet: `run.up()`) against a fresh database,
    stopped and the database dropped on the way out, whatever happened. `overrides`:
    settings for the platform's processes ({"eth_hot_lanes": "4"})."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = settings.postgres_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = settings.postgres_url.rsplit("/", 1)[0] + f"/{name}"
    run = Running(settings, url, Path(tempfile.mkdtemp(prefix=f"bench-{tag}-")), **overrides)
    try:
        yield run
    finally:
        try:
            run.down()
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'drop database if exists "{name}" with (force)')


def log_problems(workdir: Path) -> dict[str, Counter[str]]:
    found: dict[str, Counter[str]] = {}
    for log in sorted(workdir.glob("*.log")):
        counts: Counter[str] = Counter()
        for line in log.read_text(errors="replace").splitlines():
            for word in FLAGGED:
                if word in line:
                    counts[word] += 1
        if counts:
            found[log.stem] = counts
    return found


def flagged(workdir: Path) -> str:
    """Where the processes' logs are, and the lines flagged in them."""
    problems = log_problems(workdir)
    return f"process logs in {workdir}; lines flagged: " + (
        "; ".join(f"{k}: {dict(v)}" for k, v in problems.items()) or "none"
    )


def exit_now() -> None:
    """End the process without interpreter teardown: the Temporal client's Rust threads
    can abort it ("PyGILState_Release: thread state ... must be current",
    temporalio/sdk-python#300); everything is printed and cleaned up by now."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
