"""`python -m services.api.main`: serve the REST API (uvicorn) until stopped.

The API runs as `--workers` processes on one listening socket (default 2,
CUSTODY_API_WORKERS): one Python process answers a burst of requests at the pace of
its one interpreter lock (docs/decisions/0018). Each process builds its own app
(`build`); nothing a request needs is kept in one process's memory.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import TYPE_CHECKING

import uvicorn

if TYPE_CHECKING:
    from fastapi import FastAPI

DB_URL_ENV = "CUSTODY_API_SERVE_DB_URL"  # --db-url, handed to the serving processes


def build() -> FastAPI:
    """The app, as each serving process builds it (imported here: the supervising process
    only hands out the socket)."""
    from adapters.temporal import connect
    from services.api.app import create_app
    from services.platform import Platform

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    platform = Platform.load(os.environ.get(DB_URL_ENV) or None, "api")
    s = platform.settings
    app = create_app(platform, lambda: connect(s.temporal_address, s.temporal_namespace))
    print(f"api ready (process {os.getpid()})", flush=True)
    return app


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
    if args.db_url:
        os.environ[DB_URL_ENV] = args.db_url
    print(f"api serving http://{args.host}:{args.port} with {args.workers} process(es)", flush=True)
    uvicorn.run(
        "services.api.main:build",
        factory=True,
        workers=args.workers,
        host=args.host,
        port=args.port,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
