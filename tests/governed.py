"""A database with governance in place, for tests below the e2e tier: a genesis of three
operators (alice, bob, carol; quorum 2), changes proposed by alice and approved by bob
and carol with their own keys, client keys, and withdrawal intents a client signed
(what the API and the saga record before the signer is asked)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.governance.store import SqlGovernanceStore
from adapters.operations.intents import SqlIntentStore
from adapters.operations.store import SqlOperationStore
from sagas.confirmations import ConfirmedLeg, sign_confirmation
from sagas.governance import (
    DEFAULT_POLICY,
    SETTLEMENT_POLICY,
    Genesis,
    OperatorEntry,
    policy_record,
)
from sagas.intents import Intent, raw_public_key, sign_intent
from sagas.money import format_units
from sagas.operations import OperationRecord
from sagas.policy import PolicyRules
from sagas.settlement import leg_operation
from sagas.staking.intent import redelegate_intent, stake_intent, unstake_intent
from sagas.withdrawal import WithdrawalInput
from sagas.withdrawal.intent import SIGNING_GRACE, withdrawal_intent
from services.cli.request_signing import signed
from services.platform import ASSETS

OPERATORS = ("alice", "bob", "carol")
_BY_URL: dict[str, Governed] = {}


class Governed:
    def __init__(self, url: str) -> None:
        self.url = url
        self.operator_keys = {n: Ed25519PrivateKey.generate() for n in OPERATORS}
        genesis = Genesis(
            operators=tuple(
                OperatorEntry(name=n, public_key=raw_public_key(k).hex())
                for n, k in self.operator_keys.items()
            ),
            quorum=2,
            created_at=datetime.now(UTC).replace(microsecond=0),
        )
        self.genesis_hash = genesis.hash()
        self.store = SqlGovernanceStore(url, self.genesis_hash)
        self.store.install_genesis(genesis)
        self.client_keys: dict[str, Ed25519PrivateKey] = {}
        self.intents = SqlIntentStore(url, migrate=False)
        self.operations = SqlOperationStore(url, migrate=False)
        _BY_URL[url] = self

    def change(
        self, kind: str, record: dict[str, Any], client_id: str | None, asset: str = ""
    ) -> None:
        """Proposed by alice, approved by bob and carol: applied."""
        proposal = self.store.propose(kind, record, "alice", client_id, asset)
        for name in ("bob", "carol"):
            after = self.store.approve(
                proposal.id, sign_intent(proposal.intent, self.operator_keys[name])
            )
        assert after.state == "applied", after

    def policy(self, holder: str, asset: str, **rules: Any) -> None:
        rules_ = PolicyRules(client_id=holder, asset=asset, **rules)
        self.change("policy_change", policy_record(rules_), holder, asset)

    def defaults(self) -> None:
        """Governance's default rules for every asset (no limits, no approvals)."""
        for asset in ASSETS:
            self.policy(DEFAULT_POLICY, asset)

    def settlement(self, asset: str, *addresses: str) -> None:
        self.policy(
            SETTLEMENT_POLICY,
            asset,
            allow_list_required=True,
            allowed_destinations=frozenset(addresses),
        )

    def counterparty_key(self, name: str) -> Ed25519PrivateKey:
        """A liquidity provider's confirmation key, registered by the quorum."""
        key = Ed25519PrivateKey.generate()
        record = {"action": "add", "public_key": raw_public_key(key).hex()}
        self.change("counterparty_key_change", record, name)
        return key

    def client_key(self, client_id: str) -> Ed25519PrivateKey:
        key = self.client_keys.get(client_id)
        if key is None:
            key = Ed25519PrivateKey.generate()
            record = {"action": "add", "public_key": raw_public_key(key).hex()}
            self.change("client_key_change", record, client_id)
            self.client_keys[client_id] = key
        return key

    def withdrawal(
        self,
        operation: str,
        client_id: str,
        asset: str,
        amount: int,
        destination: str,
        fee_cap: int,
        requested_by: str = "u1",
        ttl: timedelta = timedelta(hours=1),
    ) -> Intent:
        """A withdrawal its client signed, recorded as the API and the saga record it
        (the operation, its intent with the signed request); its intent."""
        chain = ASSETS[asset][1]
        text = format_units(amount, ASSETS[asset][0].decimals)
        body = json.dumps({"asset": asset, "amount": text, "destination": destination})
        request = signed(
            self.client_key(client_id),
            "POST",
            f"/v1/clients/{client_id}/withdrawals",
            body.encode(),
        )
        now = datetime.now(UTC)
        self.operations.create(
            OperationRecord(
                id=operation,
                kind="withdrawal",
                client_id=client_id,
                asset=asset,
                chain=chain,
                amount=amount,
                destination=destination,
                request_hash="h",
                requested_by=requested_by,
                state="reserved",
                created_at=now,
                updated_at=now,
            )
        )
        # The intent exactly as the saga records it (sagas/withdrawal/intent.py), expiring
        # at now + ttl (a negative ttl: already expired).
        requested_at = now + ttl - SIGNING_GRACE - timedelta(seconds=1)
        req = WithdrawalInput(
            operation_id=operation,
            client_id=client_id,
            asset=asset,
            chain=chain,
            amount=amount,
            destination=destination,
            requested_by=requested_by,
            requested_at=requested_at,
            approval_ttl_seconds=1,
            request=request,
        )
        intent = withdrawal_intent(req, 0, fee_cap)
        self.intents.put_intent(intent, 0)
        return intent

    def stake(
        self,
        operation: str,
        client_id: str,
        amount: int,
        validator: str,
        fee_cap: int = 10**6,
        asset: str = "ATOM",
        requested_by: str = "u1",
    ) -> Intent:
        """A stake its client signed (`POST /v1/clients/{id}/stakes`), its intent
        recorded as the staking saga records it; its intent."""
        text = format_units(amount, ASSETS[asset][0].decimals)
        body = json.dumps({"asset": asset, "amount": text, "validator": validator})
        request = signed(
            self.client_key(client_id), "POST", f"/v1/clients/{client_id}/stakes", body.encode()
        )
        expires = datetime.now(UTC) + timedelta(hours=1)
        intent = stake_intent(
            operation,
            client_id,
            asset,
            amount,
            validator,
            fee_cap,
            0,
            expires,
            requested_by,
            request,
        )
        self.intents.put_intent(intent, 0)
        return intent

    def unstake(self, operation: str, stake: Intent, amount: int, fee_cap: int = 10**6) -> Intent:
        """An unstake of `stake` its client signed (`POST /v1/stakes/{id}/unstake`)."""
        assert stake.client_id is not None
        text = format_units(amount, ASSETS[stake.asset][0].decimals)
        body = json.dumps({"amount": text})
        request = signed(
            self.client_key(stake.client_id),
            "POST",
            f"/v1/stakes/{stake.operation_id}/unstake",
            body.encode(),
        )
        expires = datetime.now(UTC) + timedelta(hours=1)
        intent = unstake_intent(operation, stake, amount, fee_cap, 0, expires, "u1", request)
        self.intents.put_intent(intent, 0)
        return intent

    def redelegate(
        self,
        operation: str,
        position: Intent,
        amount: int,
        validator: str,
        fee_cap: int = 10**6,
        signed_validator: str | None = None,
    ) -> Intent:
        """A redelegation of `position` to `validator` its client signed (`POST
        /v1/stakes/{id}/redelegate`; `signed_validator`: the validator the client signed,
        if another)."""
        assert position.client_id is not None
        text = format_units(amount, ASSETS[position.asset][0].decimals)
        body = json.dumps({"amount": text, "validator": signed_validator or validator})
        request = signed(
            self.client_key(position.client_id),
            "POST",
            f"/v1/stakes/{position.operation_id}/redelegate",
            body.encode(),
        )
        expires = datetime.now(UTC) + timedelta(hours=1)
        intent = redelegate_intent(
            operation, position, amount, validator, fee_cap, 0, expires, "u1", request
        )
        self.intents.put_intent(intent, 0)
        return intent


def confirmed_leg(
    provider: Ed25519PrivateKey,
    settlement_id: str,
    counterparty: str,
    asset: str,
    amount: int,
    to: str,
    fee_cap: int,
    ttl: timedelta = timedelta(hours=1),
    orders: list[str] | None = None,
) -> Intent:
    """The platform's settlement leg as the settlement saga records it: its intent with
    the counterparty's confirmation, signed by `provider` (the counterparty's key)."""
    now = datetime.now(UTC).replace(microsecond=0)
    confirmation = sign_confirmation(
        provider,
        counterparty,
        settlement_id,
        "E2E" + settlement_id[-20:],
        [ConfirmedLeg(asset=asset, amount=amount, payer="platform", to=to)],
        orders or [f"o-{settlement_id}"],
        now,
    )
    return Intent(
        kind="settlement_leg",
        operation_id=leg_operation(settlement_id, counterparty, asset),
        client_id=None,
        asset=asset,
        amount=amount,
        destination=to,
        fee_cap=fee_cap,
        policy_version=0,
        expires_at=now + ttl,
        payload={
            "counterparty": counterparty,
            "chain": ASSETS[asset][1],
            "confirmation": confirmation.model_dump(mode="json"),
        },
    )


def approve(
    url: str, operation: str, asset: str, chain: str, amount: int, destination: str
) -> None:
    """A withdrawal client c1 signed, which governance's default policy allows (below any
    approval threshold), on the governed database at `url`: what the signer will pay."""
    assert ASSETS[asset][1] == chain
    fee_cap = 10**18 if chain == "ethereum" else 10**9  # the signer's own ceiling binds
    _BY_URL[url].withdrawal(operation, "c1", asset, amount, destination, fee_cap)
