"""Attacks 1c, 1d, 1g and 1h at the signer: whoever can write the database or reach
Temporal asks the real signer process to pay a withdrawal that no client signed, that
a row merely says is approved, that is approved by made-up, replayed, expired or the
requester's own signatures, that breaks the velocity limit, or that no policy covers.
Each is refused (KeyAccessDenied, CUS-4031), nothing enters the signer's record, and
the destination receives nothing on chain. Positive controls show the same payment is
signed once the real signatures are there."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account

from adapters.chains.ethereum.faucet import DevChainFaucet
from adapters.operations.store import SqlOperationStore
from adapters.sqldb import SqlDatabase
from adapters.temporal.signing import TemporalSigningClient
from sagas.errors import KeyAccessDenied
from sagas.intents import Approval, Intent, sign_intent
from services.platform import Platform
from services.settings import PlatformSettings
from tests.governed import Governed
from tests.redteam.conftest import signatures

ETH = 10**18
CAP = 10**18


class Payer:
    """The hot wallet on a fresh database, and the attacker's signing client."""

    def __init__(
        self, s: PlatformSettings, url: str, attacker: TemporalSigningClient, gov: Governed
    ) -> None:
        self.s, self.url, self.attacker, self.gov = s, url, attacker, gov
        p = Platform(s, url)
        p.create_wallet()
        self.hot = p.hot_wallet()
        self.node = p.eth
        DevChainFaucet(self.node.web3).fund_eth(self.hot.address, ETH)

    def tx(self, to: str, wei: int) -> dict[str, Any]:
        nonce = self.node.pending_nonce(self.hot.address)
        return dict(self.node.prepare(self.hot.address, self.node.eth_transfer(to, wei), nonce))

    def sign(self, operation: str, to: str, wei: int) -> bytes:
        return self.attacker.sign_evm_transaction(
            operation, self.s.platform_wallet, self.hot.index, self.tx(to, wei)
        )

    def refused(self, operation: str, to: str, wei: int, why: str) -> None:
        with pytest.raises(KeyAccessDenied) as denied:
            self.sign(operation, to, wei)
        assert denied.value.code == "CUS-4031"
        assert why in str(denied.value), denied.value
        assert signatures(self.url, operation) == 0
        assert self.node.balance(to) == 0

    def approvals(self, intent: Intent, *approvals: Approval) -> None:
        for a in approvals:
            self.gov.intents.add_approval(a, "whoever")  # a table anyone can write

    def pay_once_signed(self, operation: str, to: str, wei: int) -> None:
        raw = self.sign(operation, to, wei)
        receipt = self.node.wait_receipt(self.node.broadcast(raw), 30)
        assert receipt.succeeded and self.node.balance(to) == wei
        assert signatures(self.url, operation) == 1


@pytest.fixture
def payer(
    stack_settings: PlatformSettings,
    fresh_postgres_url: str,
    attacker: TemporalSigningClient,
    governed: Governed,
) -> Payer:
    return Payer(stack_settings, fresh_postgres_url, attacker, governed)


def test_a_row_approved_in_the_database_or_an_intent_nobody_signed_pays_nothing(
    payer: Payer,
) -> None:
    gov, thief = payer.gov, Account.create().address
    # 1d: an operation written straight into the database, marked approved.
    op = f"wd-{uuid.uuid4().hex[:8]}"
    ops = SqlOperationStore(payer.url, migrate=False)
    gov.withdrawal(op, "c1", "ETH", 5000, thief, CAP)
    with SqlDatabase(payer.url).tx(write=True) as conn:  # no client signature at all
        conn.run("delete from intents where operation_id = ?", (op,))
    ops.advance(op, "approved", state="approved", approved=True)
    payer.refused(op, thief, 5000, "no intent")
    # An intent a database writer made up: the client's request is missing, or signed
    # by a key of another client, or it names another destination than was signed.
    forged = f"wd-{uuid.uuid4().hex[:8]}"
    intent = gov.withdrawal(forged, "c1", "ETH", 5000, Account.create().address, CAP)
    with SqlDatabase(payer.url).tx(write=True) as conn:
        conn.run(
            "update intents set intent = ? where operation_id = ?",
            (
                intent.model_copy(update={"destination": thief}).canonical().decode(),
                forged,
            ),
        )
    payer.refused(forged, thief, 5000, "not what the client signed")
    other = f"wd-{uuid.uuid4().hex[:8]}"
    gov.client_key("c2")
    gov.withdrawal(other, "c2", "ETH", 5000, thief, CAP)
    with SqlDatabase(payer.url).tx(write=True) as conn:
        row = conn.one("select intent from intents where operation_id = ?", (other,))
        moved = Intent.from_json(row[0]).model_copy(update={"client_id": "c1"})
        conn.run(
            "update intents set intent = ? where operation_id = ?",
            (moved.canonical().decode(), other),
        )
    payer.refused(other, thief, 5000, "request signature does not hold")


def test_approvals_count_only_as_valid_signatures_by_other_registered_operators(
    payer: Payer,
) -> None:
    gov = payer.gov
    gov.policy("c1", "ETH", approval_threshold=0, approval_quorum=2)
    to = Account.create().address
    op = f"wd-{uuid.uuid4().hex[:8]}"
    intent = gov.withdrawal(op, "c1", "ETH", 4000, to, CAP, requested_by="carol")
    keys = gov.operator_keys
    payer.refused(op, to, 4000, "0 valid approval(s)")
    # 1c: names are worth nothing; an approval row by made-up keys either.
    payer.approvals(intent, sign_intent(intent, Ed25519PrivateKey.generate()))
    payer.approvals(intent, sign_intent(intent, Ed25519PrivateKey.generate()))
    payer.refused(op, to, 4000, "0 valid approval(s)")
    # 1g: the requester's own approval, and bob's approval of another intent.
    payer.approvals(intent, sign_intent(intent, keys["carol"]))
    elsewhere = intent.model_copy(update={"destination": Account.create().address})
    replayed = sign_intent(elsewhere, keys["bob"]).model_copy(
        update={"intent_hash": intent.hash()}  # filed under this intent, signed over another
    )
    payer.approvals(intent, replayed)
    payer.approvals(intent, sign_intent(intent, keys["alice"]))
    payer.refused(op, to, 4000, "1 valid approval(s)")
    # Positive control: bob's own approval of this intent completes the quorum.
    payer.approvals(intent, sign_intent(intent, keys["bob"]))
    payer.pay_once_signed(op, to, 4000)


def test_an_expired_intent_is_not_signed_even_with_its_quorum(payer: Payer) -> None:
    gov = payer.gov
    gov.policy("c1", "ETH", approval_threshold=0, approval_quorum=2)
    to = Account.create().address
    op = f"wd-{uuid.uuid4().hex[:8]}"
    intent = gov.withdrawal(op, "c1", "ETH", 3000, to, CAP, ttl=-timedelta(minutes=1))
    keys = gov.operator_keys
    payer.approvals(intent, sign_intent(intent, keys["alice"]), sign_intent(intent, keys["bob"]))
    payer.refused(op, to, 3000, "valid approval")


def test_the_signer_holds_the_velocity_limit_from_its_own_record(payer: Payer) -> None:
    payer.gov.policy("c1", "ETH", daily_velocity_limit=1000)
    first, second = Account.create().address, Account.create().address
    a, b = f"wd-{uuid.uuid4().hex[:8]}", f"wd-{uuid.uuid4().hex[:8]}"
    payer.gov.withdrawal(a, "c1", "ETH", 600, first, CAP)
    payer.gov.withdrawal(b, "c1", "ETH", 600, second, CAP)
    payer.pay_once_signed(a, first, 600)
    payer.refused(b, second, 600, "velocity")


@pytest.mark.no_default_policy
def test_a_client_without_a_policy_is_refused(payer: Payer) -> None:
    to = Account.create().address
    op = f"wd-{uuid.uuid4().hex[:8]}"
    payer.gov.withdrawal(op, "c1", "ETH", 2000, to, CAP)
    payer.refused(op, to, 2000, "has no ETH policy")


def test_one_signed_request_pays_one_operation(payer: Payer) -> None:
    """A database writer copies a paid withdrawal's intent, with its client's genuine
    signed request, under another operation id: the signer's record holds the request
    to the first operation."""
    gov, to = payer.gov, Account.create().address
    first = f"wd-{uuid.uuid4().hex[:8]}"
    intent = gov.withdrawal(first, "c1", "ETH", 2500, to, CAP)
    payer.pay_once_signed(first, to, 2500)
    copy = f"wd-{uuid.uuid4().hex[:8]}"
    gov.withdrawal(copy, "c1", "ETH", 1, Account.create().address, CAP)  # the row, any intent
    with SqlDatabase(payer.url).tx(write=True) as conn:
        conn.run("delete from intents where operation_id = ?", (copy,))
    gov.intents.put_intent(intent.model_copy(update={"operation_id": copy}), 0)
    with pytest.raises(KeyAccessDenied) as denied:
        payer.sign(copy, to, 2500)
    assert f"signed for {first}" in str(denied.value), denied.value
    assert signatures(payer.url, copy) == 0
    assert payer.node.balance(to) == 2500  # paid once
