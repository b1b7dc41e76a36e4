"""Starting stakes and unstakes (issue 14, decision 0028), the REST API's one path.

Like a withdrawal (services/app/withdrawals.py): everything that can be checked before
anything is written is checked here, then the operation is recorded under its
idempotency key and its saga started with that id, so a repeated request returns the
same saga and another body under the same key is refused (409 CUS-3005).

A stake: the client's signed `POST /v1/clients/{id}/stakes` of exactly `asset`,
`amount` and `validator` (what the signer verifies again, sagas/signing/authority.py),
ATOM only, more than zero, to a validator on the platform's allow-list
(`CUSTODY_COSMOS_VALIDATORS`), with the amount and the fee available. An unstake: the
client's signed `POST /v1/stakes/{stake}/unstake` of exactly `amount`, of an active
(or slashed) stake, for no more than is still staked of it (its amount less its unstakes
that did not end rejected, expired or failed, less its share of slashes), with the fee
available. A redelegation (decision 0033): the client's signed
`POST /v1/stakes/{position}/redelegate` of exactly `amount` and `validator`, of an
active position (a stake or a redelegation), for no more than is still staked of it, to
another validator on the allow-list, and not from a validator that a redelegation of the
client's has moved into and the chain still holds the entry of (the chain refuses a
transitive redelegation until that entry completes). Once settled it is a position of
its own, unstaked or redelegated as a stake is.

The fee is the client's (its own address pays it): `STAKING_FEE` uatom per transaction,
or `CUSTODY_COSMOS_GAS_PRICE` times `STAKING_GAS` when a gas price is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from sagas import accounts
from sagas.errors import (
    DependencyUnavailable,
    IdempotencyConflict,
    IdempotencyKeyMissing,
    InsufficientFunds,
    InvalidAmount,
    InvalidState,
    NotFound,
    RequestInvalid,
    RequestSignatureInvalid,
    UnknownAccount,
    UnknownAsset,
)
from sagas.intents import Refusal, SignedRequest, check_request_signature
from sagas.operations import OperationRecord, recorded_step, request_hash
from sagas.staking import RedelegateInput, StakeInput, UnstakeInput
from sagas.staking.positions import (
    HOLDING,
    POSITION_OPS,
    UNDONE,
    left_of,
    reduced_by,
    taken_from,
)
from sagas.staking.workflows import RedelegateWorkflow, StakeWorkflow, UnstakeWorkflow
from sagas.withdrawal.intent import SIGNING_GRACE
from services.app.cosmos_fees import COSMOS_FEE, COSMOS_FEE_GAS, cosmos_fee
from services.app.withdrawals import KEY_PATTERN, MAX_SKEW, parse_amount
from services.platform import ASSETS, Platform

R = TypeVar("R")

STAKABLE = ("ATOM",)  # the assets a client may stake (decision 0028)
# The fee a staking transaction offers (services/app/cosmos_fees.py): the same as any
# transaction from the client's own address.
STAKING_FEE, STAKING_GAS, staking_fee = COSMOS_FEE, COSMOS_FEE_GAS, cosmos_fee
MAX_POLL_SECONDS = 5  # Tendermint commits a block every few seconds
PENDING = frozenset({"requested", "reserved", "awaiting_approval", "approved", "broadcast"})
ALL_UNSTAKES = 10_000  # a client's unstakes read at once (for_client's limit)
# A position as the custodians' staking APIs name it (sagas.staking.PositionState), and
# `redelegated` once redelegations out of it took all of it.
Position = Literal[
    "pending", "active", "unbonding", "withdrawn", "redelegated", "slashed", "failed"
]


class StakeBody(BaseModel):
    """A stake request: exactly what the client signs. The amount is a decimal string
    in ATOM (never a JSON number)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    asset: str = Field(
        min_length=1, max_length=12, examples=["ATOM"], json_schema_extra={"enum": [*STAKABLE]}
    )
    amount: str = Field(
        min_length=1,
        max_length=100,
        examples=["12.5"],
        # The document states the shape (6 decimals, not zero); the API answers its own
        # codes (CUS-3004, CUS-1008) for what breaks it.
        json_schema_extra={
            "allOf": [{"pattern": r"^(0|[1-9][0-9]*)(\.[0-9]{1,6})?$"}, {"pattern": "[1-9]"}]
        },
    )
    validator: str = Field(
        min_length=1,
        max_length=128,
        examples=["cosmosvaloper1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqlxklzq"],
        description="a validator's operator address on the platform's allow-list "
        "(GET /v1/staking/validators; 422 CUS-3001 otherwise)",
    )


class UnstakeBody(BaseModel):
    """An unstake request: exactly what the client signs, the amount in the stake's
    asset (decimal string)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    amount: str = Field(
        min_length=1,
        max_length=100,
        examples=["2.5"],
        json_schema_extra={
            "allOf": [{"pattern": r"^(0|[1-9][0-9]*)(\.[0-9]{1,6})?$"}, {"pattern": "[1-9]"}]
        },
    )


class RedelegateBody(BaseModel):
    """A redelegation request: exactly what the client signs, the amount in the
    position's asset (decimal string) and the validator it moves to."""

    model_config = ConfigDict(extra="forbid", strict=True)

    amount: str = Field(
        min_length=1,
        max_length=100,
        examples=["2.5"],
        json_schema_extra={
            "allOf": [{"pattern": r"^(0|[1-9][0-9]*)(\.[0-9]{1,6})?$"}, {"pattern": "[1-9]"}]
        },
    )
    validator: str = Field(
        min_length=1,
        max_length=128,
        examples=["cosmosvaloper1zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3yx7rls"],
        description="another validator on the platform's allow-list (422 CUS-3001 otherwise)",
    )


# --- pure rules -----------------------------------------------------------------------
def stake_id(client_id: str, key: str) -> str:
    if not KEY_PATTERN.fullmatch(key):
        raise IdempotencyKeyMissing(f"{key!r}")
    return f"stk:{client_id}:{key}"


def unstake_id(stake: str, key: str) -> str:
    if not KEY_PATTERN.fullmatch(key):
        raise IdempotencyKeyMissing(f"{key!r}")
    return f"uns:{stake}:{key}"


def redelegation_id(position: str, key: str) -> str:
    if not KEY_PATTERN.fullmatch(key):
        raise IdempotencyKeyMissing(f"{key!r}")
    return f"red:{position}:{key}"


def of_stake(stake: str, unstakes: list[OperationRecord]) -> list[OperationRecord]:
    """The unstakes of one position and its redelegations out, among a client's (keys
    have no ':', so the prefix is exact), oldest first."""
    return taken_from(stake, unstakes)


def still_staked(stake: OperationRecord, unstakes: list[OperationRecord], slashed: int = 0) -> int:
    """What of the stake no unstake or slash has taken: its amount less every unstake of
    it that did not end rejected, expired or failed (those in progress count), less its
    share of the slashes booked (sagas/staking/slashing.py)."""
    return left_of(stake, unstakes, slashed)


def position(stake: OperationRecord, unstakes: list[OperationRecord], slashed: int = 0) -> Position:
    """The position: pending until delegated, failed if it never was; then unbonding
    while one of its unstakes unbonds, withdrawn once unstakes (and slashes) took all of
    it, redelegated once redelegations out took (the rest of) it, slashed once the chain
    cut it, else active."""
    if stake.state in UNDONE:
        return "failed"
    if stake.state not in HOLDING:
        return "pending"
    if any(u.state == "unbonding" for u in unstakes):
        return "unbonding"
    came_back = sum(u.amount for u in unstakes if u.kind == "unstake" and u.state == "completed")
    moved = sum(u.amount for u in unstakes if u.kind == "redelegation" and u.state in HOLDING)
    if came_back + moved + slashed >= stake.amount:
        return "redelegated" if moved else "withdrawn"
    return "slashed" if stake.state == "slashed" else "active"


def check_signed(
    platform: Platform,
    client_id: str,
    target: str,
    model: type[StakeBody] | type[UnstakeBody] | type[RedelegateBody],
    body: BaseModel,
    request: SignedRequest,
) -> None:
    """The client's request signature, as withdrawals check theirs: by a key governance
    registered to this client, over exactly `POST target` and this body, fresh
    (RequestSignatureInvalid otherwise). The nonce is claimed once the request is valid."""
    checked = check_request_signature(
        request.method,
        request.target,
        request.body_bytes(),
        request.signature,
        platform.verified.client_keys(),
    )
    if not checked.ok:
        assert checked.refusal is not None
        raise RequestSignatureInvalid(checked.refusal.value)
    if checked.client_id != client_id:
        raise RequestSignatureInvalid("signed by a key of another client")
    if (request.method, request.target) != ("POST", target):
        raise RequestSignatureInvalid("the signature is for another request")
    if abs(request.signature.timestamp - datetime.now(UTC)) > MAX_SKEW:
        raise RequestSignatureInvalid(Refusal.CLOCK_SKEW.value)
    try:
        signed = model.model_validate_json(request.body_bytes())
    except ValueError:
        raise RequestSignatureInvalid("the signed body is not this request") from None
    if signed != body:
        raise RequestSignatureInvalid("the body is not the one signed")


# --- the use case ----------------------------------------------------------------------
class Stakes:
    def __init__(self, platform: Platform, temporal: Client) -> None:
        self._p = platform
        self._temporal = temporal

    # checks
    def validate(self, client_id: str, body: StakeBody) -> tuple[str, int, str, int]:
        """(asset, amount in minor units, validator, fee), or the first thing wrong."""
        if self._p.operations.client(client_id) is None:
            raise NotFound(f"client {client_id}")
        if body.asset not in ASSETS:
            raise UnknownAsset(f"{body.asset}; known: {', '.join(sorted(ASSETS))}")
        if body.asset not in STAKABLE:
            raise UnknownAsset(f"{body.asset} cannot be staked; stakable: {', '.join(STAKABLE)}")
        asset = ASSETS[body.asset][0]
        amount = parse_amount(body.amount, asset.code, asset.decimals)
        if amount <= 0:
            raise InvalidAmount("the amount must be more than zero")
        allowed = self._p.settings.allowed_validators()
        if body.validator not in allowed:
            raise RequestInvalid(
                f"validator {body.validator} is not on the platform's allow-list "
                "(GET /v1/staking/validators)"
            )
        fee = staking_fee(self._p.settings)
        self._affords(client_id, asset.code, amount + fee)
        return asset.code, amount, body.validator, fee

    def _affords(self, client_id: str, asset: str, needed: int) -> None:
        try:
            available = self._p.ledger.balance(accounts.client(client_id, asset)).available
        except UnknownAccount:  # a client opened before the asset existed holds none
            available = 0
        if available < needed:
            raise InsufficientFunds(
                f"available {available}, needed {needed} minor units (the fee included)"
            )

    def delegator(self, client_id: str, asset: str) -> str:
        """The client's own delegator address: its deposit address (decision 0028)."""
        try:
            return self._p.client_address(client_id, asset).address
        except KeyError:
            # A wallet made before coin 118 was added has no Cosmos xpub (decision 0028).
            raise DependencyUnavailable("the platform wallet has no Cosmos keys") from None

    def claim(self, request: SignedRequest) -> None:
        sig = request.signature
        if not self._p.nonces.claim(sig.key_id, sig.nonce, sig.timestamp + MAX_SKEW):
            raise RequestSignatureInvalid(Refusal.REPLAYED_NONCE.value)

    # reads
    def stake(self, stake_id: str) -> OperationRecord | None:
        """A position: a stake or a redelegation."""
        op = self._p.operations.get(stake_id)
        return op if op is not None and op.kind in POSITION_OPS else None

    def unstakes(self, client_id: str) -> list[OperationRecord]:
        """The client's unstakes and redelegations: what takes from its positions."""
        ops = self._p.operations
        return [
            *ops.for_client(client_id, "unstake", ALL_UNSTAKES),
            *ops.for_client(client_id, "redelegation", ALL_UNSTAKES),
        ]

    def recorded(self, op_id: str) -> dict[str, Any]:
        return recorded_step(self._p.operations.timeline(op_id), "requested") or {}

    def current(self, stored: OperationRecord) -> OperationRecord:
        return self._p.operations.get(stored.id) or stored

    # stakes
    async def create(
        self,
        client_id: str,
        key: str,
        body: StakeBody,
        requested_by: str,
        request: SignedRequest | None,
    ) -> tuple[OperationRecord, bool]:
        """The stake for (client, key): recorded and its saga started, or the one there is.
        A new stake needs its client's signed request (RequestSignatureInvalid)."""
        op_id = stake_id(client_id, key)
        stored, created, start = await asyncio.to_thread(
            self._record_stake, client_id, key, op_id, body, requested_by, request
        )
        return await self._start(StakeWorkflow.run, stored, created, start)

    def _record_stake(
        self,
        client_id: str,
        key: str,
        op_id: str,
        body: StakeBody,
        requested_by: str,
        request: SignedRequest | None,
    ) -> tuple[OperationRecord, bool, StakeInput]:
        existing = self._p.operations.get(op_id)
        digest = request_hash(
            {
                "client": client_id,
                "asset": body.asset,
                "amount": body.amount,
                "validator": body.validator,
            }
        )
        if existing is not None and existing.request_hash != digest:
            raise IdempotencyConflict(f"{key} was used for another stake")
        if existing is None:
            if request is None:
                raise RequestSignatureInvalid("a stake is signed by its client's key")
            target = f"/v1/clients/{client_id}/stakes"
            try:
                check_signed(self._p, client_id, target, StakeBody, body, request)
                asset, amount, validator, fee = self.validate(client_id, body)
                delegator = self.delegator(client_id, asset)
                self.claim(request)
            except RequestSignatureInvalid as refused:
                if "replayed" not in str(refused):
                    raise
                # The same request twice at once: the one that claimed it records it.
                existing = self._p.operations.get(op_id)
                if existing is None or existing.request_hash != digest:
                    raise
        if existing is not None:  # a retry: answer as the first time, whatever changed
            detail = self.recorded(op_id)
            asset, amount, validator = existing.asset, existing.amount, existing.destination or ""
            fee, delegator = int(detail["fee"]), str(detail["delegator"])
            request = _request(detail)
        now = datetime.now(UTC)
        s = self._p.settings
        record = OperationRecord(
            id=op_id,
            kind="stake",
            client_id=client_id,
            asset=asset,
            chain=ASSETS[asset][1],
            amount=amount,
            destination=validator,
            request_hash=digest,
            requested_by=requested_by,
            state="requested",
            created_at=now,
            updated_at=now,
        )
        # The signed request is kept with the first step: a retry after a crash between
        # recording and starting the saga starts it with the same request. No event: the
        # staking events begin with the saga's `reserved`.
        stored, created = self._p.operations.create(
            record, [], {"request": _dumped(request), "delegator": delegator, "fee": fee}
        )
        if not created:
            detail = self.recorded(op_id)
            fee, delegator, request = int(detail["fee"]), str(detail["delegator"]), _request(detail)
        start = StakeInput(
            operation_id=op_id,
            client_id=client_id,
            asset=stored.asset,
            amount=stored.amount,
            validator=stored.destination or "",
            delegator=delegator,
            requested_by=stored.requested_by,
            requested_at=stored.created_at,
            fee=fee,
            approval_ttl_seconds=s.approval_ttl_seconds,
            poll_seconds=min(s.chain_poll_seconds, MAX_POLL_SECONDS),
            request=request,
        )
        return stored, created, start

    # unstakes
    async def unstake(
        self,
        stake: OperationRecord,
        key: str,
        body: UnstakeBody,
        requested_by: str,
        request: SignedRequest | None,
    ) -> tuple[OperationRecord, bool]:
        """The unstake of `stake` for key: recorded and its saga started, or the one there
        is. The stake must be active and hold the amount still."""
        op_id = unstake_id(stake.id, key)
        stored, created, start = await asyncio.to_thread(
            self._record_unstake, stake, key, op_id, body, requested_by, request
        )
        return await self._start(UnstakeWorkflow.run, stored, created, start)

    def _record_unstake(
        self,
        stake: OperationRecord,
        key: str,
        op_id: str,
        body: UnstakeBody,
        requested_by: str,
        request: SignedRequest | None,
    ) -> tuple[OperationRecord, bool, UnstakeInput]:
        assert stake.client_id is not None
        client_id = stake.client_id
        existing = self._p.operations.get(op_id)
        digest = request_hash({"stake": stake.id, "amount": body.amount})
        if existing is not None and existing.request_hash != digest:
            raise IdempotencyConflict(f"{key} was used for another unstake")
        if existing is None:
            if request is None:
                raise RequestSignatureInvalid("an unstake is signed by its client's key")
            check_signed(
                self._p, client_id, f"/v1/stakes/{stake.id}/unstake", UnstakeBody, body, request
            )
        with self._positions_of(client_id, stake.asset, existing is None):
            return self._store_unstake(stake, op_id, body, requested_by, request, digest, existing)

    def _store_unstake(
        self,
        stake: OperationRecord,
        op_id: str,
        body: UnstakeBody,
        requested_by: str,
        request: SignedRequest | None,
        digest: str,
        existing: OperationRecord | None,
    ) -> tuple[OperationRecord, bool, UnstakeInput]:
        assert stake.client_id is not None
        client_id = stake.client_id
        if existing is None:
            assert request is not None
            try:
                amount, fee = self._check_unstake(stake, body)
                delegator = self.delegator(client_id, stake.asset)
                self.claim(request)
            except RequestSignatureInvalid as refused:
                if "replayed" not in str(refused):
                    raise
                existing = self._p.operations.get(op_id)
                if existing is None or existing.request_hash != digest:
                    raise
        if existing is not None:
            detail = self.recorded(op_id)
            amount = existing.amount
            fee, delegator = int(detail["fee"]), str(detail["delegator"])
            request = _request(detail)
        now = datetime.now(UTC)
        s = self._p.settings
        record = OperationRecord(
            id=op_id,
            kind="unstake",
            client_id=client_id,
            asset=stake.asset,
            chain=stake.chain,
            amount=amount,
            destination=stake.destination,
            request_hash=digest,
            requested_by=requested_by,
            state="requested",
            created_at=now,
            updated_at=now,
        )
        detail = {
            "request": _dumped(request),
            "stake_id": stake.id,
            "delegator": delegator,
            "fee": fee,
        }
        stored, created = self._p.operations.create(record, [], detail)
        if not created:
            detail = self.recorded(op_id)
            fee, delegator, request = int(detail["fee"]), str(detail["delegator"]), _request(detail)
        start = UnstakeInput(
            operation_id=op_id,
            stake_id=stake.id,
            client_id=client_id,
            asset=stored.asset,
            amount=stored.amount,
            validator=stored.destination or "",
            delegator=delegator,
            requested_by=stored.requested_by,
            requested_at=stored.created_at,
            fee=fee,
            approval_ttl_seconds=s.approval_ttl_seconds,
            poll_seconds=min(s.chain_poll_seconds, MAX_POLL_SECONDS),
            request=request,
        )
        return stored, created, start

    def _positions_of(
        self, client_id: str, asset: str, taking: bool
    ) -> contextlib.AbstractContextManager[None]:
        """Held while what is left of a position is checked and the unstake or redelegation
        taking from it is stored (`taking`; a repeat takes nothing new): one lock per
        client and asset, in every process (the API's and the router's), so two at once
        never take more than a position holds, nor one redelegate from a validator another
        redelegation is moving into. Taken after the request's signature is checked."""
        if not taking:
            return contextlib.nullcontext()
        return self._p.operations.serialised(f"positions:{client_id}:{asset}")

    def _check_unstake(self, stake: OperationRecord, body: UnstakeBody) -> tuple[int, int]:
        """(amount, fee): the stake is active, the amount more than zero and no more than
        is still staked of it, the fee available."""
        assert stake.client_id is not None
        if stake.state not in HOLDING:
            raise InvalidState(f"{stake.id} is not active ({stake.state})")
        decimals = ASSETS[stake.asset][0].decimals
        amount = parse_amount(body.amount, stake.asset, decimals)
        if amount <= 0:
            raise InvalidAmount("the amount must be more than zero")
        reduced = reduced_by(stake, self._p.operations.timeline(stake.id))
        left = still_staked(stake, of_stake(stake.id, self.unstakes(stake.client_id)), reduced)
        if amount > left:
            raise InsufficientFunds(f"still staked {left}, asked {amount} minor units")
        fee = staking_fee(self._p.settings)
        self._affords(stake.client_id, stake.asset, fee)
        return amount, fee

    # redelegations
    async def redelegate(
        self,
        position: OperationRecord,
        key: str,
        body: RedelegateBody,
        requested_by: str,
        request: SignedRequest | None,
    ) -> tuple[OperationRecord, bool]:
        """The redelegation of `position` for key: recorded and its saga started, or the
        one there is."""
        op_id = redelegation_id(position.id, key)
        stored, created, start = await asyncio.to_thread(
            self._record_redelegation, position, key, op_id, body, requested_by, request
        )
        return await self._start(RedelegateWorkflow.run, stored, created, start)

    def _record_redelegation(
        self,
        position: OperationRecord,
        key: str,
        op_id: str,
        body: RedelegateBody,
        requested_by: str,
        request: SignedRequest | None,
    ) -> tuple[OperationRecord, bool, RedelegateInput]:
        assert position.client_id is not None
        client_id = position.client_id
        existing = self._p.operations.get(op_id)
        digest = request_hash(
            {"stake": position.id, "amount": body.amount, "validator": body.validator}
        )
        if existing is not None and existing.request_hash != digest:
            raise IdempotencyConflict(f"{key} was used for another redelegation")
        if existing is None:
            if request is None:
                raise RequestSignatureInvalid("a redelegation is signed by its client's key")
            target = f"/v1/stakes/{position.id}/redelegate"
            check_signed(self._p, client_id, target, RedelegateBody, body, request)
        with self._positions_of(client_id, position.asset, existing is None):
            return self._store_redelegation(
                position, op_id, body, requested_by, request, digest, existing
            )

    def _store_redelegation(
        self,
        position: OperationRecord,
        op_id: str,
        body: RedelegateBody,
        requested_by: str,
        request: SignedRequest | None,
        digest: str,
        existing: OperationRecord | None,
    ) -> tuple[OperationRecord, bool, RedelegateInput]:
        assert position.client_id is not None
        client_id = position.client_id
        if existing is None:
            assert request is not None
            try:
                amount, fee = self._check_redelegation(position, body)
                delegator = self.delegator(client_id, position.asset)
                self.claim(request)
            except RequestSignatureInvalid as refused:
                if "replayed" not in str(refused):
                    raise
                existing = self._p.operations.get(op_id)
                if existing is None or existing.request_hash != digest:
                    raise
        if existing is not None:
            detail = self.recorded(op_id)
            amount = existing.amount
            fee, delegator = int(detail["fee"]), str(detail["delegator"])
            request = _request(detail)
        now = datetime.now(UTC)
        s = self._p.settings
        source = position.destination or ""
        record = OperationRecord(
            id=op_id,
            kind="redelegation",
            client_id=client_id,
            asset=position.asset,
            chain=position.chain,
            amount=amount,
            destination=body.validator,
            request_hash=digest,
            requested_by=requested_by,
            state="requested",
            created_at=now,
            updated_at=now,
        )
        detail = {
            "request": _dumped(request),
            "stake_id": position.id,
            "source": source,
            "delegator": delegator,
            "fee": fee,
        }
        stored, created = self._p.operations.create(record, [], detail)
        if not created:
            detail = self.recorded(op_id)
            fee, delegator, request = int(detail["fee"]), str(detail["delegator"]), _request(detail)
        start = RedelegateInput(
            operation_id=op_id,
            stake_id=position.id,
            client_id=client_id,
            asset=stored.asset,
            amount=stored.amount,
            source=str(detail.get("source") or source),
            validator=stored.destination or "",
            delegator=delegator,
            requested_by=stored.requested_by,
            requested_at=stored.created_at,
            fee=fee,
            approval_ttl_seconds=s.approval_ttl_seconds,
            poll_seconds=min(s.chain_poll_seconds, MAX_POLL_SECONDS),
            request=request,
        )
        return stored, created, start

    def _check_redelegation(
        self, position: OperationRecord, body: RedelegateBody
    ) -> tuple[int, int]:
        """(amount, fee): the position active, the amount more than zero and no more than
        is still staked of it, the destination another allowed validator, no redelegation
        into the source still held by the chain, the fee available."""
        amount, fee = self._check_unstake(position, UnstakeBody(amount=body.amount))
        if body.validator not in self._p.settings.allowed_validators():
            raise RequestInvalid(
                f"validator {body.validator} is not on the platform's allow-list "
                "(GET /v1/staking/validators)"
            )
        if body.validator == position.destination:
            raise RequestInvalid(f"{position.id} is delegated to {body.validator} already")
        assert position.client_id is not None
        now = datetime.now(UTC)
        for red in self._p.operations.for_client(position.client_id, "redelegation", ALL_UNSTAKES):
            if red.destination != position.destination or red.state in UNDONE:
                continue
            held = self._held_until(red, now)
            if held is None or held > now:
                raise InvalidState(
                    f"{red.id} moved into {position.destination}; the chain refuses a "
                    "redelegation from it until that one completes"
                    + ("" if held is None else f" ({held.isoformat()})")
                )
        return amount, fee

    def _held_until(self, red: OperationRecord, now: datetime) -> datetime | None:
        """Until when the chain may hold `red`'s entry into its validator (None: not known,
        so held): its recorded completion once settled; one not broadcast, while the
        signer may still sign it (until its intent expires: the signer refuses it after);
        otherwise (broadcast and unsettled, settled with no completion time, or past its
        signing window: bytes signed in time may still land) the chain's own entries into
        the validator, the latest to complete, and with none: free, except one broadcast
        and unsettled (it may still land)."""
        timeline = self._p.operations.timeline(red.id)
        settled = recorded_step(timeline, "active")
        if settled is not None and settled.get("completion_time") is not None:
            return datetime.fromisoformat(str(settled["completion_time"]))
        broadcast = recorded_step(timeline, "broadcast") is not None
        if settled is None and not broadcast:
            stored = self._p.intents.intent(red.id, "redelegate")
            window = timedelta(seconds=self._p.settings.approval_ttl_seconds) + SIGNING_GRACE
            signable = red.created_at + window if stored is None else stored[0].expires_at
            if signable > now:
                return signable
        detail = self.recorded(red.id)
        entries = self._p.cosmos.redelegations_into(str(detail["delegator"]), red.destination or "")
        if entries:
            return max(entries)
        return None if settled is None and broadcast else now

    # sagas
    async def _start(
        self, run: Any, stored: OperationRecord, created: bool, start: BaseModel
    ) -> tuple[OperationRecord, bool]:
        if not created and stored.state != "requested":
            # Its saga ran its first step: never start another.
            return await asyncio.to_thread(self.current, stored), False
        # Started on every call until it moved: after a crash between recording and
        # starting, the retry starts it; if it runs already, Temporal refuses a second.
        try:
            with contextlib.suppress(WorkflowAlreadyStartedError):
                await self._temporal.start_workflow(
                    run,
                    start,
                    id=stored.id,
                    task_queue=self._p.settings.saga_task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                )
        except RPCError as exc:
            # Recorded, not started: the same request again (same key) starts it.
            raise DependencyUnavailable(f"the saga did not start ({exc}): retry") from None
        if created:
            return stored, True
        return await asyncio.to_thread(self.current, stored), False

    def handle(self, op: OperationRecord) -> WorkflowHandle[Any, Any]:
        runs: dict[str, Any] = {
            "unstake": UnstakeWorkflow.run,
            "redelegation": RedelegateWorkflow.run,
        }
        return self._temporal.get_workflow_handle_for(runs.get(op.kind, StakeWorkflow.run), op.id)


def _request(detail: dict[str, Any]) -> SignedRequest | None:
    value = detail.get("request")
    return None if value is None else SignedRequest.model_validate(value, strict=False)


def _dumped(request: SignedRequest | None) -> dict[str, Any] | None:
    return None if request is None else request.model_dump(mode="json")
