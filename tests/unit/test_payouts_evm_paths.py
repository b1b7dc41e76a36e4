"""When an Ethereum refusal means "nothing sent" (adapters/chains/payouts.py), over
SQLite with the broadcaster faked. Found by a hostile review of decision 0026: a payment
the signer signed whose answer the worker lost, then refused (its lane dropped from the
signer's setting, a node estimate refused), voided the withdrawal while the signed
payment could still be broadcast. A refusal voids it only when the signer's record holds
no signature for it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.chains.payouts import ChainPayouts
from adapters.ledger.migrate import upgrade
from adapters.operations.signer_record import evm_claim
from adapters.sqldb import SqlDatabase
from sagas.errors import DependencyUnavailable, KeyAccessDenied

OP = "wd:c1:1"
DEST = "0x52908400098527886E0F7030069857D2E4169EE7"


class _Refusing:
    def send(self, op: str, signers: Any, call: Any, gas_limit: Any) -> Any:
        raise KeyAccessDenied(f"withdrawal {op}: not the hot wallet's key")


class _Node:
    @staticmethod
    def eth_transfer(to: str, wei: int) -> dict[str, Any]:
        return {"to": to, "value": wei}


@pytest.mark.parametrize("signed", [False, True])
def test_a_refusal_voids_only_what_the_signer_never_signed(tmp_path: Path, signed: bool) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    upgrade(url)
    payouts = ChainPayouts(
        url,
        "w1",
        (_Refusing(), _Node(), None, [(0, DEST)]),
        {},
        12,
        None,
        6,  # type: ignore[arg-type]
    )
    if signed:  # signed at lane 1's nonce 3; the answer lost, nothing recorded
        SqlDatabase(url).write(
            lambda conn: conn.run(
                "insert into signer_claims (claim, operation_id, created_at) values (?, ?, ?)",
                (evm_claim(31337, DEST, 3), OP, conn.time(datetime.now(UTC))),
            )
        )
    expected = DependencyUnavailable if signed else KeyAccessDenied
    with pytest.raises(expected):  # KeyAccessDenied: the saga voids; else it retries
        payouts.send(OP, "ETH", DEST, 10**15)
