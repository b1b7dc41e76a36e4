"""An ATOM withdrawal through the withdrawal saga (decision 0035): it leaves from the
client's own address, which pays the network fee, so the fee is reserved with the amount
from the client's available balance and is the client's once the chain charged it; the
platform's network-fee account is not touched. A refusal before the broadcast releases
both; a transaction failed in its block moves nothing but its fee."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from temporalio.client import Client

from sagas import accounts
from sagas.errors import InsufficientFunds, PolicyDenied
from sagas.governance import StaticGovernance
from sagas.intents import RegisteredKey
from sagas.ledger import ATOM, Transfer
from sagas.policy import PolicyRules
from sagas.withdrawal import WithdrawalInput
from sagas.withdrawal.activities import WithdrawalActivities
from sagas.withdrawal.workflows import WithdrawalWorkflow
from tests.fakes import FakeIntentStore, FakeOperationStore, FakePolicyStore, InMemoryLedger
from tests.fakes_chains import FakePayouts
from tests.sagas.conftest import QUEUE, SagaServer, books, requested
from tests.sagas.test_withdrawal_saga import NoHits

CLIENT = "acme"
FUNDED = 10_000_000  # uatom
FEE = 2_000
SOURCE = "cosmos1tygms3xhhs3yv487phx3dw4a95jn7t7lpm470r"  # the client's own (here: any)
TO = "cosmos1fl48vsnmsdzcv85q5d2q4z5ajdha8yu34mf0eh"
OPERATORS = {name: Ed25519PrivateKey.generate() for name in ("alice", "bob")}


def _run(
    test_server: SagaServer, amount: int, payouts: FakePayouts, policy: bool = True
) -> tuple[InMemoryLedger, Any, str]:
    ledger, result, op_id, _intents = _run_with(test_server, amount, payouts, policy)
    return ledger, result, op_id


def _run_with(
    test_server: SagaServer, amount: int, payouts: FakePayouts, policy: bool = True
) -> tuple[InMemoryLedger, Any, str, FakeIntentStore]:
    ledger = books(ATOM, CLIENT)
    fund = Transfer(
        id="funding",
        debit_account=accounts.omnibus("ATOM"),
        credit_account=accounts.client(CLIENT, "ATOM"),
        asset="ATOM",
        amount=FUNDED,
    )
    ledger.submit([fund])
    policies = FakePolicyStore()
    if policy:
        policies.put(PolicyRules(client_id=CLIENT, asset="ATOM"), "genesis")
    registered = [RegisteredKey.of(n, k) for n, k in OPERATORS.items()]
    governance = StaticGovernance(operator_keys={k.key_id: k for k in registered})
    ops, intents = FakeOperationStore(), FakeIntentStore()
    acts = WithdrawalActivities(
        ledger, ops, policies, payouts, intents, governance, lambda _a: 200_000, NoHits()
    )
    op_id = f"wd:{CLIENT}:{uuid.uuid4().hex[:8]}"
    seen: dict[str, Any] = {}

    async def go(client: Client) -> None:
        req = WithdrawalInput(
            operation_id=op_id,
            client_id=CLIENT,
            asset="ATOM",
            chain="cosmos",
            amount=amount,
            destination=TO,
            requested_by="carol",
            requested_at=datetime.now(UTC),
            source=SOURCE,
            network_fee=FEE,
        )
        requested(ops, op_id, "withdrawal", CLIENT, "ATOM", "cosmos", amount, "carol", TO)
        handle = await client.start_workflow(
            WithdrawalWorkflow.run, req, id=op_id, task_queue=QUEUE
        )
        seen["result"] = await handle.result()

    test_server.run([WithdrawalWorkflow], acts.all(), go)
    return ledger, seen["result"], op_id, intents


def available(ledger: InMemoryLedger) -> int:
    return ledger.balance(accounts.client(CLIENT, "ATOM")).available


def test_an_atom_withdrawal_leaves_from_the_clients_address_which_pays_the_fee(
    test_server: SagaServer,
) -> None:
    payouts = FakePayouts(final_after=2)
    ledger, result, op_id, intents = _run_with(test_server, 3_000_000, payouts)
    # The signer may let the chain take no more fee than the books reserved.
    stored = intents.intent(op_id)
    assert stored is not None and stored[0].fee_cap == FEE
    assert (result.state, result.fee, result.fee_asset) == ("completed", FEE, "ATOM")
    assert payouts.sends == {op_id: 1} and payouts.sources == {op_id: SOURCE}
    assert payouts.paid == {TO: 3_000_000}
    # The client paid the amount and the fee; the books' chain holdings fell by both (the
    # fee left the client's address for the network); the platform paid nothing.
    assert available(ledger) == ledger.balance(accounts.client(CLIENT, "ATOM")).total
    assert available(ledger) == FUNDED - 3_000_000 - FEE
    assert ledger.balance(accounts.omnibus("ATOM")).total == -(FUNDED - 3_000_000 - FEE)
    assert ledger.balance(accounts.network_fees("ATOM")).total == 0


def test_the_fee_is_reserved_with_the_amount(test_server: SagaServer) -> None:
    """The whole balance is not withdrawable: the fee would not be covered."""
    payouts = FakePayouts()
    ledger, result, _op = _run(test_server, FUNDED - FEE + 1, payouts)
    assert (result.state, result.error_code) == ("rejected", InsufficientFunds.code)
    assert payouts.sends == {} and available(ledger) == FUNDED
    ledger, result, _op = _run(test_server, FUNDED - FEE, FakePayouts())
    assert result.state == "completed" and available(ledger) == 0
    assert ledger.balance(accounts.client(CLIENT, "ATOM")).total == 0


def test_a_denial_releases_the_amount_and_the_fee(test_server: SagaServer) -> None:
    payouts = FakePayouts()
    ledger, result, _op = _run(test_server, 1_000_000, payouts, policy=False)
    assert (result.state, result.error_code) == ("rejected", PolicyDenied.code)
    assert payouts.sends == {}
    assert available(ledger) == FUNDED
    assert ledger.balance(accounts.client(CLIENT, "ATOM")).total == FUNDED


def test_failed_in_its_block_the_client_pays_only_the_fee(test_server: SagaServer) -> None:
    payouts = FakePayouts(outcome="reverted")
    ledger, result, _op = _run(test_server, 1_000_000, payouts)
    assert (result.state, result.fee) == ("failed", FEE)
    assert available(ledger) == FUNDED - FEE
    # Nothing left pending: the fee posted, the amount voided.
    assert ledger.balance(accounts.client(CLIENT, "ATOM")).total == FUNDED - FEE
    assert ledger.balance(accounts.network_fees("ATOM")).total == 0


def test_refused_at_the_node_the_client_pays_nothing(test_server: SagaServer) -> None:
    """Never in a block (CheckTx refused it): no fee was charged; both holds are voided."""
    payouts = FakePayouts(outcome="reverted", atom_fee=0)
    ledger, result, _op = _run(test_server, 1_000_000, payouts)
    assert (result.state, result.fee) == ("failed", 0)
    assert available(ledger) == ledger.balance(accounts.client(CLIENT, "ATOM")).total == FUNDED
