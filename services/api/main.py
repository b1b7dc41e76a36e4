"""`python -m services.api.main`: serve the REST API (uvicorn) until stopped."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from adapters.temporal import connect
from services.api.app import create_app
from services.platform import Platform


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db-url", help="default: CUSTODY_LEDGER_URL_API, else CUSTODY_LEDGER_URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    platform = Platform.load(args.db_url, "api")
    s = platform.settings
    app = create_app(platform, lambda: connect(s.temporal_address, s.temporal_namespace))
    print(f"api ready on http://{args.host}:{args.port}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
