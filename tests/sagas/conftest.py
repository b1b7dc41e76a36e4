"""The fast saga tier: the sagas' real workflows and activities over the fakes of their
ports (tests/fakes.py, each passing its port's contract suite), on Temporal's
time-skipping test server (infra/testserver.py), without the stack. A day of approval
window or an hour of a stuck transaction passes in moments."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.testserver import ensure


@pytest.fixture(scope="session")
def test_server() -> Path:
    """The time-skipping server's launcher (installed from Maven Central on first use)."""
    return ensure(lambda line: print(f"[sagas] {line}"))
