"""The staking sagas' fast-tier world: an in-memory ledger and operation store with
clients funded in ATOM, stakes as the stake saga leaves them (the record, the staked
balance and the delegation on the fake chain)."""

from __future__ import annotations

from datetime import UTC, datetime

from sagas import accounts
from sagas.ledger import ATOM, Account, AccountKind, Transfer
from sagas.operations import OperationRecord
from sagas.staking.positions import settled_position
from tests.fakes import FakeOperationStore, InMemoryLedger
from tests.fakes_chains import FakeDelegations
from tests.sagas.conftest import books

V1 = "cosmosvaloper1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqlxklzq"
V2 = "cosmosvaloper1zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzxxxxxx"
FUNDED = 100_000_000


def delegator(client: str) -> str:
    return f"cosmos1{client}"


def staked(ledger: InMemoryLedger, ops: FakeOperationStore, client: str, validator: str,
           amount: int, n: int, chain: FakeDelegations | None = None,
           address: str | None = None,
           settled: dict[str, object] | None = None) -> str:  # fmt: skip
    """An active stake as the stake saga leaves it: its record, what its settlement
    recorded of the delegation (`settled`, or read from the fake chain after delegating
    there) and the staked balance, from `address` (else the fake's)."""
    op_id = f"stk:{client}:{n}"
    now = datetime.now(UTC)
    ops.create(
        OperationRecord(
            id=op_id, kind="stake", client_id=client, asset="ATOM", chain="cosmos",
            amount=amount, destination=validator, request_hash=op_id, requested_by=client,
            state="requested", created_at=now, updated_at=now,
        ),
        [],
        {"delegator": address or delegator(client), "fee": 2000},
    )  # fmt: skip
    if settled is None and chain is not None:
        chain.delegate(op_id, address or delegator(client), validator, amount, 2000)
        height = chain.txs[op_id].height
        view = chain.delegation(address or delegator(client), validator, height)
        settled = {"height": height, **settled_position(view, height)}
    ops.advance(op_id, "active", detail=settled or {"height": 1}, state="active")
    ledger.open_account(
        Account(id=accounts.staked(client, validator, "ATOM"), asset="ATOM",
                kind=AccountKind.STAKING_LOCKED, owner=client)
    )  # fmt: skip
    ledger.submit(
        [
            Transfer(
                id=f"{op_id}:post",
                debit_account=accounts.client(client, "ATOM"),
                credit_account=accounts.staked(client, validator, "ATOM"),
                asset="ATOM",
                amount=amount,
            )
        ]
    )
    return op_id


def world() -> tuple[InMemoryLedger, FakeOperationStore, FakeDelegations]:
    ledger = books(ATOM, "acme")
    for client in ("acme", "beta", "gamma"):
        ledger.open_account(
            Account(id=accounts.client(client, "ATOM"), asset="ATOM",
                    kind=AccountKind.CLIENT_AVAILABLE, owner=client)
        )  # fmt: skip
        ledger.submit(
            [
                Transfer(
                    id=f"fund:{client}",
                    debit_account=accounts.omnibus("ATOM"),
                    credit_account=accounts.client(client, "ATOM"),
                    asset="ATOM",
                    amount=FUNDED,
                )
            ]
        )
    return ledger, FakeOperationStore(), FakeDelegations()


def available(ledger: InMemoryLedger, client: str) -> int:
    return ledger.balance(accounts.client(client, "ATOM")).available
