"""The watcher process survives a failing step (seen on CI: anvil answering "block not
found" for a height it had just reported, in the middle of a reorg)."""

from __future__ import annotations

import threading

from services.chainwatch.main import follow


class FlakyWatcher:
    def __init__(self, stop: threading.Event) -> None:
        self.calls = 0
        self._stop = stop

    def step(self, max_blocks: int = 50) -> int:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("Block with id: '0x136' not found.")
        if self.calls == 3:
            self._stop.set()
        return 1


def test_a_failed_step_is_retried_not_fatal() -> None:
    stop = threading.Event()
    watcher = FlakyWatcher(stop)
    follow(watcher, stop, idle=0.01)
    assert watcher.calls == 3
