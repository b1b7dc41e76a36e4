"""`python -m services.chainwatch.main --chain ethereum|bitcoin|cosmos`: follow a chain and
record deposits to platform addresses until stopped (--until-caught-up: exit when at the
head).

--pause-in-block FILE is for crash tests only: in the first block with a deposit,
after its observations are written and before they commit, create FILE and wait to
be killed.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from adapters.keys.store import SqlKeyStore
from sagas.ports import ChainReader
from services.chainwatch.watcher import ChainWatcher
from services.settings import PlatformSettings

log = logging.getLogger("custody.chainwatch")


# Each chain's client is imported by its own reader's builder: a watcher loads only its
# chain's (web3 alone is most of a second of a start).
def _bitcoin(s: PlatformSettings) -> tuple[ChainReader, int]:
    from adapters.chains.bitcoin.node import BtcdNode
    from adapters.chains.bitcoin.reader import BitcoinChainReader

    node = BtcdNode(s.btc_rpc_url, s.btc_rpc_auth(), s.btc_network)
    return BitcoinChainReader(node, s.btc_network), s.btc_confirmations


def _ethereum(s: PlatformSettings) -> tuple[ChainReader, int]:
    from adapters.chains.ethereum.node import Web3EthereumNode
    from adapters.chains.ethereum.reader import EthereumChainReader

    node = Web3EthereumNode(s.eth_rpc_url)
    return EthereumChainReader(node, {s.eth_token_address: "CTUSD"}), s.eth_confirmations


def _cosmos(s: PlatformSettings) -> tuple[ChainReader, int]:
    from adapters.chains.cosmos.reader import CosmosChainReader

    return CosmosChainReader(s.cosmos_grpc_url, s.cosmos_denom), s.cosmos_confirmations


# Chain name -> its reader and confirmation depth from the settings.
READERS: dict[str, Callable[[PlatformSettings], tuple[ChainReader, int]]] = {
    "ethereum": _ethereum,
    "bitcoin": _bitcoin,
    "cosmos": _cosmos,
}


class _Steps(Protocol):
    def step(self, max_blocks: int = 50) -> int: ...


def follow(watcher: _Steps, stop: threading.Event, idle: float = 1.0) -> None:
    """Step until stopped. A step is all-or-nothing per block, so after any error (the
    node answering mid-reorg that a block it just named does not exist, a dropped
    connection) the watcher logs it, waits and steps again: it never dies of it."""
    while not stop.is_set():
        try:
            if watcher.step() == 0:
                stop.wait(idle)
        except Exception:
            log.exception("step failed; retrying in %.0f s", idle)
            stop.wait(idle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chain", choices=sorted(READERS), default="ethereum")
    parser.add_argument(
        "--db-url", help="default: CUSTODY_LEDGER_URL_CHAINWATCH, else CUSTODY_LEDGER_URL"
    )
    parser.add_argument("--start-height", type=int, help="first block, if no position is stored")
    parser.add_argument(
        "--confirmations",
        type=int,
        help="default: CUSTODY_ETH_ / CUSTODY_BTC_ / CUSTODY_COSMOS_CONFIRMATIONS",
    )
    parser.add_argument("--until-caught-up", action="store_true")
    parser.add_argument("--pause-in-block", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per RPC call is noise
    settings = PlatformSettings.load()
    url = args.db_url or settings.db_url("chainwatch")

    def pause(_height: int) -> None:
        if args.pause_in_block is not None:
            args.pause_in_block.touch()
            while True:
                time.sleep(3600)

    reader, depth = READERS[args.chain](settings)
    watcher = ChainWatcher(
        url,
        reader,
        SqlKeyStore(url),
        confirmations=args.confirmations or depth,
        start_height=args.start_height,
        before_commit=pause,
    )
    if args.until_caught_up:
        watcher.run_until_caught_up()
        print(f"{watcher.chain}: caught up", flush=True)
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"watching {watcher.chain}", flush=True)
    follow(watcher, stop)


if __name__ == "__main__":
    main()
