"""Attacks on the platform's settlement legs at the real signer: a database writer or a
worker-side Temporal client asks it to pay an Ethereum leg to a counterparty's
allow-listed address that the counterparty never confirmed, confirmed for less, or
confirmed for another settlement, or with a confirmation signed by a key governance
never registered to it. Each is refused (CUS-4031), nothing enters the signer's record
and the address receives nothing; the genuine confirmed leg is then paid once, and the
same trades confirmed again under a new settlement are not paid again."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account

from adapters.sqldb import SqlDatabase
from sagas.errors import KeyAccessDenied
from sagas.intents import Intent
from sagas.operations import OperationRecord
from tests.governed import confirmed_leg
from tests.redteam.conftest import signatures
from tests.redteam.test_signatures import CAP, Payer, payer

__all__ = ["payer"]


def record(payer: Payer, intent: Intent) -> None:
    """The leg as the settlement saga records it: an approved operation and its intent
    (tables any process could write: storage, not trust)."""
    now = datetime.now(UTC)
    payer.gov.operations.create(
        OperationRecord(
            id=intent.operation_id,
            kind="settlement",
            client_id=None,
            asset=intent.asset,
            chain="ethereum",
            amount=intent.amount,
            destination=intent.destination,
            request_hash="h",
            requested_by="schedule",
            state="approved",
            approved=True,
            created_at=now,
            updated_at=now,
        )
    )
    payer.gov.intents.put_intent(intent, 0)


def replace_intent(payer: Payer, intent: Intent) -> None:
    with SqlDatabase(payer.url).tx(write=True) as conn:
        conn.run(
            "update intents set intent = ? where operation_id = ?",
            (intent.canonical().decode(), intent.operation_id),
        )


def test_only_a_leg_the_counterparty_confirmed_is_paid(payer: Payer) -> None:
    gov = payer.gov
    lp = Account.create().address  # the counterparty's settlement address (allow-listed)
    gov.settlement("ETH", lp)
    provider = gov.counterparty_key("lp-alpha")
    # 1. A leg a database writer made up: no confirmation at all.
    sid = f"st-{uuid.uuid4().hex[:8]}"
    genuine = confirmed_leg(provider, sid, "lp-alpha", "ETH", 4000, lp, CAP)
    forged = genuine.model_copy(
        update={"payload": {**(genuine.payload or {}), "confirmation": None}}
    )
    record(payer, forged)
    payer.refused(forged.operation_id, lp, 4000, "no settlement confirmation")
    # 2. Confirmed by a key governance never registered to the counterparty.
    attacker = Ed25519PrivateKey.generate()
    replace_intent(payer, confirmed_leg(attacker, sid, "lp-alpha", "ETH", 4000, lp, CAP))
    payer.refused(forged.operation_id, lp, 4000, "signature does not hold")
    # 3. The counterparty's genuine confirmation of 4000 wei, the intent asking more.
    replace_intent(payer, genuine.model_copy(update={"amount": 400_000}))
    payer.refused(forged.operation_id, lp, 400_000, "not what the counterparty confirmed")
    # 4. The genuine confirmation copied under another settlement's leg operation.
    other = f"st-{uuid.uuid4().hex[:8]}:lp-alpha:ETH"
    record(payer, genuine.model_copy(update={"operation_id": other}))
    payer.refused(other, lp, 4000, "the confirmation is for")
    # The genuine confirmed leg is paid, once.
    replace_intent(payer, genuine)
    payer.pay_once_signed(genuine.operation_id, lp, 4000)
    assert signatures(payer.url) == 1
    with pytest.raises(KeyAccessDenied):
        payer.sign(other, lp, 4000)
    # 5. The same trades cancelled at the provider and confirmed again, genuinely, under
    # a new settlement: each trade settles once, so the second leg pays nothing.
    again = confirmed_leg(
        provider,
        f"st-{uuid.uuid4().hex[:8]}",
        "lp-alpha",
        "ETH",
        4000,
        lp,
        CAP,
        orders=[f"o-{sid}"],
    )
    record(payer, again)
    with pytest.raises(KeyAccessDenied, match="the trade was signed for"):
        payer.sign(again.operation_id, lp, 4000)
    assert signatures(payer.url, again.operation_id) == 0
    assert payer.node.balance(lp) == 4000 and signatures(payer.url) == 1
