"""Checks on an operator's decision for a stuck withdrawal, before it reaches the saga.

A fee bump the signer would refuse is refused here (CUS-3013), so the operator hears
it at once; the saga records a refusal that gets past this check (a market that rose
since) as the decision's outcome and waits for the next one."""

from __future__ import annotations

from adapters.sqldb import SqlDatabase
from sagas.errors import FeeAboveCap
from sagas.operations import OperationRecord


def check_bump(db_url: str, op: OperationRecord, fee_percent: int, max_fee_per_gas: int) -> None:
    """FeeAboveCap if replacing the operation's live Ethereum transaction at `fee_percent`
    would offer more than the signer's cap (a replacement never offers less than the
    transaction it replaces, times the percent)."""
    if op.chain != "ethereum":
        return  # Bitcoin bumps are paid from the change; the sender refuses what it cannot
    with SqlDatabase(db_url).tx() as conn:
        row = conn.one(
            "select max_fee from evm_transactions where operation_id = ? and state in "
            "('signed', 'broadcast') order by attempt desc limit 1",
            (op.id,),
        )
    if row is None:
        return  # nothing waiting to replace: the saga decides (mined, or not sent yet)
    offered = int(row[0]) * fee_percent // 100
    if offered > max_fee_per_gas:
        raise FeeAboveCap(
            f"a bump of {fee_percent}% offers {offered} wei/gas; the signer's cap is "
            f"{max_fee_per_gas} (at most {max_fee_per_gas * 100 // int(row[0])}%)"
        )
