"""`python -m services.worker.main`: run the platform's Temporal workers until stopped.

At start it opens the books (assets, platform accounts), creates the platform wallet
if there is none (this process's OpenBao role may wrap a new seed, never unwrap one)
and derives the hot wallet's address.

--pause-at STEP:FILE is for crash tests only: after the withdrawal step STEP
(reserve, broadcast, post) has had its effect, create FILE and wait to be killed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from pathlib import Path

from adapters.temporal import connect
from services.platform import Platform
from services.worker.bootstrap import (
    build_workers,
    ensure_rewards_schedule,
    ensure_settlement_schedule,
    ensure_watch_schedule,
)


async def run(db_url: str | None, pause_at: str | None) -> None:
    platform = Platform.load(db_url, "worker")
    platform.open_books()
    platform.create_wallet()
    hot = platform.hot_wallets()
    client = await connect(
        platform.settings.temporal_address,
        platform.settings.temporal_namespace,
        platform.settings.temporal_transport(),
    )

    def pause(step: str) -> None:
        if pause_at is None:
            return
        wanted, _, marker = pause_at.partition(":")
        if step == wanted:
            Path(marker).touch()
            while True:
                time.sleep(3600)

    workers = build_workers(client, platform, pause)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    for w in workers:
        await w.__aenter__()
    schedule = await ensure_settlement_schedule(client, platform)
    if schedule is not None:
        logging.getLogger("custody.worker").info("settlement schedule %s", schedule)
    rewards = await ensure_rewards_schedule(client, platform)
    if rewards is not None:
        logging.getLogger("custody.worker").info("staking rewards schedule %s", rewards)
    watch = await ensure_watch_schedule(client, platform)
    if watch is not None:
        logging.getLogger("custody.worker").info("staking watch schedule %s", watch)
    print(f"worker ready (hot wallet {', '.join(h.address for h in hot)})", flush=True)
    try:
        await stop.wait()
    finally:
        for w in workers:
            await w.__aexit__(None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--db-url", help="default: CUSTODY_LEDGER_URL_WORKER, else CUSTODY_LEDGER_URL"
    )
    parser.add_argument("--pause-at", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(run(args.db_url, args.pause_at))


if __name__ == "__main__":
    main()
