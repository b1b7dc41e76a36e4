"""`python -m services.api.main`: serve the REST API (uvicorn) until stopped.

The API runs as `--workers` processes on one listening socket (default 2,
CUSTODY_API_WORKERS): one Python process answers a burst of requests at the pace of
its one interpreter lock (docs/decisions/0018). Each process builds its own app
(`build`); nothing a request needs is kept in one process's memory.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

import uvicorn

if TYPE_CHECKING:
    from fastapi import FastAPI

# Handed by `main` to the serving processes it spawns (set or cleared on every start, so
# a value inherited from the environment never counts).
DB_URL_ENV = "CUSTODY_API_SERVE_DB_URL"  # --db-url
SUPERVISOR_ENV = "CUSTODY_API_SUPERVISOR_PID"  # the process that spawned this one
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def build() -> FastAPI:
    """The app, as each serving process builds it (imported here: the supervising process
    only hands out the socket)."""
    from adapters.temporal import connect
    from services.api.app import create_app
    from services.platform import Platform

    _die_with_supervisor()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    platform = Platform.load(os.environ.get(DB_URL_ENV) or None, "api")
    s = platform.settings
    return create_app(
        platform,
        lambda: connect(s.temporal_address, s.temporal_namespace, s.temporal_transport()),
        on_ready=lambda: print(f"api ready (process {os.getpid()})", flush=True),
    )


def _die_with_supervisor() -> None:
    """A serving process ends with the process that spawned it: killed, it would
    otherwise leave its serving processes answering on the socket (Linux: the kernel
    sends SIGKILL when the parent dies)."""
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if not supervisor or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != int(supervisor):  # it died before the line above
        os._exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db-url", help="default: CUSTODY_LEDGER_URL_API, else CUSTODY_LEDGER_URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("CUSTODY_API_WORKERS", "2")),
        help="serving processes (default 2, CUSTODY_API_WORKERS)",
    )
    args = parser.parse_args()
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    os.environ.pop(DB_URL_ENV, None)
    os.environ.pop(SUPERVISOR_ENV, None)
    if args.db_url:
        os.environ[DB_URL_ENV] = args.db_url
    if args.workers > 1:
        os.environ[SUPERVISOR_ENV] = str(os.getpid())
    print(f"api serving http://{args.host}:{args.port} with {args.workers} process(es)", flush=True)
    uvicorn.run(
        "services.api.main:build",
        factory=True,
        workers=args.workers,
        host=args.host,
        port=args.port,
        log_level="warning",
        # A serving process that does not answer the supervisor's ping in this long is
        # killed as hung: on a saturated machine 5 s (uvicorn's default) is too short.
        timeout_worker_healthcheck=60,
    )


if __name__ == "__main__":
    main()
