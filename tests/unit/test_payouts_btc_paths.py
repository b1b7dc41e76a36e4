"""Which way a Bitcoin withdrawal is paid, and when a refusal means "nothing sent"
(adapters/chains/payouts.py, decision 0025), over SQLite with the sender and the batches
faked: a withdrawal with a payment of its own from before batching (the signer's record
holds inputs for it) goes on alone, never also in a batch; any other goes through the
batches; a refusal voids it only when neither the sender nor the signer's record holds a
payment for it (a signature whose answer was lost may still be broadcast)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.chains.payouts import ChainPayouts
from adapters.ledger.migrate import upgrade
from adapters.operations.signer_record import btc_claim, member_claim
from adapters.sqldb import SqlDatabase
from sagas.errors import DependencyUnavailable, KeyAccessDenied

OP = "wd:c1:1"
DEST = "sb1qexample"


class _Sender:
    def __init__(self) -> None:
        self.paid: list[str] = []

    def pay(self, op: str, wallet: str, outputs: Any, rate: int) -> tuple[str, int]:
        self.paid.append(op)
        return "aa" * 32, 300


class _Batches:
    def __init__(self, refuse: bool = False) -> None:
        self.paid: list[str] = []
        self.refuse = refuse

    def queued(self, op: str) -> None:
        return None

    def batch_of(self, op: str) -> None:
        return None

    def pay(self, op: str, wallet: str, dest: str, amount: int, rate: int) -> tuple[str, int]:
        self.paid.append(op)
        if self.refuse:
            raise KeyAccessDenied(f"the signer refused {op}")
        return "bb" * 32, 100


def _payouts(tmp_path: Path, batches: _Batches) -> tuple[ChainPayouts, _Sender, str]:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    upgrade(url)
    sender = _Sender()
    payouts = ChainPayouts(
        url,
        "w1",
        None,
        {},
        12,
        (sender, None),
        6,
        btc_batches=batches,  # type: ignore[arg-type]
    )
    return payouts, sender, url


def _claim(url: str, claim: str, owner: str) -> None:
    SqlDatabase(url).write(
        lambda conn: conn.run(
            "insert into signer_claims (claim, operation_id, created_at) values (?, ?, ?)",
            (claim, owner, conn.time(datetime.now(UTC))),
        )
    )


def test_a_withdrawal_goes_through_the_batches(tmp_path: Path) -> None:
    batches = _Batches()
    payouts, sender, _url = _payouts(tmp_path, batches)
    assert payouts.send(OP, "BTC", DEST, 10_000) == "bb" * 32
    assert (batches.paid, sender.paid) == ([OP], [])


def test_one_the_signer_signed_alone_before_batching_goes_on_alone(tmp_path: Path) -> None:
    batches = _Batches()
    payouts, sender, url = _payouts(tmp_path, batches)
    _claim(url, btc_claim("cc" * 32, 0), OP)  # an input of its own signature
    assert payouts.send(OP, "BTC", DEST, 10_000) == "aa" * 32
    assert (batches.paid, sender.paid) == ([], [OP])


@pytest.mark.parametrize("held", ["nothing", "a batch's member claim", "its own claim"])
def test_a_refusal_voids_only_what_the_signer_never_signed(tmp_path: Path, held: str) -> None:
    payouts, _sender, url = _payouts(tmp_path, _Batches(refuse=True))
    if held == "a batch's member claim":
        _claim(url, member_claim(OP), "btc-batch:wd:c1:0")
    elif held == "its own claim":
        _claim(url, f"request:k1:{OP}", OP)
    expected = KeyAccessDenied if held == "nothing" else DependencyUnavailable
    with pytest.raises(expected):  # KeyAccessDenied: the saga voids; else it retries
        payouts.send(OP, "BTC", DEST, 10_000)
