"""Staking routes of the REST API (issue 14): a client's stakes of ATOM with a validator
on the platform's allow-list, their unstakes and redelegations (a redelegation is a
position of its own, decision 0033), the operators' approvals of each, and the allowed
validators as the chain reports them. Shaped like the withdrawal routes:
signed requests, Idempotency-Key naming the saga, 202 at once with where to poll."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from temporalio.service import RPCError

from adapters.chains.cosmos.node import QueryRefused, UnknownValidator
from sagas.errors import InvalidState, NotFound
from sagas.intents import Approval, intent_kind
from sagas.money import format_units
from sagas.operations import OperationRecord, Step, recorded_step
from sagas.staking.positions import HOLDING, POSITION_OPS, reduced_by, slashed_from
from sagas.withdrawal import ApprovalView
from services.api.auth import Principal
from services.api.deps import SIGNATURE_PARAMETERS, Key, Signed, Who
from services.api.openapi import LOCATION, poll_at, started
from services.api.trading import Remember
from services.app.approvals import take_approval
from services.app.stakes import (
    Position,
    RedelegateBody,
    StakeBody,
    Stakes,
    UnstakeBody,
    of_stake,
    position,
    still_staked,
)
from services.platform import ASSETS, Platform


class UnstakeSummary(BaseModel):
    unstake_id: str = Field(examples=["uns:stk:acme-treasury:2026-12-stake-1:u1"])
    amount: str = Field(examples=["2.5"])
    amount_minor: str = Field(examples=["2500000"])
    state: str = Field(examples=["unbonding"])
    completion_time: str | None = Field(
        default=None, description="when the chain releases it (RFC 3339), once undelegated"
    )


class RedelegationSummary(BaseModel):
    redelegation_id: str = Field(examples=["red:stk:acme-treasury:2026-12-stake-1:r1"])
    validator: str = Field(description="the validator it moved to")
    amount: str = Field(examples=["2.5"])
    amount_minor: str = Field(examples=["2500000"])
    state: str = Field(examples=["active"])


class StakeView(BaseModel):
    stake_id: str = Field(
        examples=["stk:acme-treasury:2026-12-stake-1"],
        description="the position: a stake (stk:...) or a redelegation (red:...)",
    )
    kind: Literal["stake", "redelegation"] = Field(default="stake", examples=["stake"])
    source_stake_id: str | None = Field(
        default=None, description="a redelegation's: the position it moved from"
    )
    source_validator: str | None = Field(
        default=None, description="a redelegation's: the validator it moved from"
    )
    completion_time: str | None = Field(
        default=None,
        description="a redelegation's: when the chain's redelegation entry ends (RFC 3339); "
        "before then nothing is redelegated from its validator (409 CUS-3009)",
    )
    client_id: str
    asset: str = Field(examples=["ATOM"])
    validator: str
    delegator: str = Field(description="the client's own address the stake delegates from")
    amount: str = Field(examples=["12.5"])
    amount_minor: str = Field(examples=["12500000"])
    staked: str = Field(
        examples=["10"],
        description="the amount less its unstakes that did not fail and its slashes",
    )
    staked_minor: str = Field(examples=["10000000"])
    state: str = Field(examples=["active"], description="the stake saga's state")
    position: Position = Field(
        examples=["active"],
        description="pending (not delegated yet), active, unbonding (one of its unstakes "
        "unbonds), withdrawn (all of it came back), redelegated (redelegations took the "
        "rest of it), slashed (the chain cut it: `slashed_minor`), failed (never delegated)",
    )
    slashed_minor: str = Field(
        default="0", examples=["0"], description="what slashes took from it (uatom)"
    )
    error_code: str | None = Field(default=None, examples=[None])
    tx_hash: str | None = None
    fee_minor: str | None = Field(default=None, description="the network fee paid (uatom)")
    requested_by: str
    created_at: str
    updated_at: str
    unstakes: list[UnstakeSummary] = Field(default_factory=list)
    redelegations: list[RedelegationSummary] = Field(
        default_factory=list, description="the redelegations out of it"
    )
    timeline: list[Step] = Field(default_factory=list)


class UnstakeView(BaseModel):
    unstake_id: str = Field(examples=["uns:stk:acme-treasury:2026-12-stake-1:u1"])
    stake_id: str
    client_id: str
    asset: str
    validator: str
    amount: str = Field(examples=["2.5"])
    amount_minor: str = Field(examples=["2500000"])
    state: str = Field(examples=["unbonding"])
    error_code: str | None = None
    completion_time: str | None = Field(default=None, description="when the chain releases it")
    released_minor: str | None = Field(default=None, description="what came back (completed)")
    slashed_minor: str | None = Field(default=None, description="what the chain cut meanwhile")
    tx_hash: str | None = None
    fee_minor: str | None = None
    requested_by: str
    created_at: str
    updated_at: str
    timeline: list[Step] = Field(default_factory=list)


class StakingIntentView(BaseModel):
    intent: dict[str, Any] = Field(description="the intent, as RFC 8785 canonical JSON reads")
    intent_hash: str = Field(description="SHA-256 over custody.intent.v1\\n + canonical JSON")
    approvals_required: int
    approvals: list[dict[str, Any]] = Field(description="handed in so far (not all may count)")


class ValidatorView(BaseModel):
    operator_address: str = Field(examples=["cosmosvaloper1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqlxklzq"])
    status: str = Field(
        examples=["BOND_STATUS_BONDED"],
        description="the chain's: BOND_STATUS_BONDED, _UNBONDING, _UNBONDED; `unknown` if "
        "the chain has no such validator",
    )
    jailed: bool | None = None
    tokens: str | None = Field(default=None, examples=["1000000.5"], description="bonded, ATOM")
    tokens_minor: str | None = Field(default=None, examples=["1000000500000"])


def staking_routes(platform: Platform, state: dict[str, Any], remembered: Remember) -> APIRouter:
    router = APIRouter(tags=["staking"])

    def units(amount: int | None, asset: str) -> str | None:
        return None if amount is None else format_units(amount, ASSETS[asset][0].decimals)

    def own(who: Principal, op_id: str, kind: str) -> OperationRecord:
        """The operation, of `kind` (`stake`: a position, a stake or a redelegation)."""
        kinds = POSITION_OPS if kind == "stake" else (kind,)
        op = platform.operations.get(op_id)
        if op is None or op.kind not in kinds or op.client_id is None:
            raise NotFound(f"{kind} {op_id}")
        if who.role == "client" and who.client_id != op.client_id:
            raise NotFound(f"{kind} {op_id}")  # not even its existence
        return op

    def known_client(client_id: str) -> None:
        if platform.operations.client(client_id) is None:
            raise NotFound(f"client {client_id}")

    def detail(steps: list[Step], step: str, key: str) -> str | None:
        value = (recorded_step(steps, step) or {}).get(key)
        return None if value is None else str(value)

    def summary(u: OperationRecord) -> UnstakeSummary:
        steps = platform.operations.timeline(u.id) if u.state in ("unbonding", "completed") else []
        return UnstakeSummary(
            unstake_id=u.id,
            amount=units(u.amount, u.asset) or "0",
            amount_minor=str(u.amount),
            state=u.state,
            completion_time=detail(steps, "unbonding", "completion_time"),
        )

    def stake_view(
        op: OperationRecord, unstakes: list[OperationRecord], timeline: bool = True
    ) -> StakeView:
        steps = platform.operations.timeline(op.id)
        slashed, reduced = slashed_from(steps), reduced_by(op, steps)
        left = still_staked(op, unstakes, reduced) if op.state in HOLDING else 0
        red = op.kind == "redelegation"
        return StakeView(
            stake_id=op.id,
            kind="redelegation" if red else "stake",
            source_stake_id=detail(steps, "requested", "stake_id") if red else None,
            source_validator=detail(steps, "requested", "source") if red else None,
            completion_time=detail(steps, "active", "completion_time") if red else None,
            client_id=op.client_id or "",
            asset=op.asset,
            validator=op.destination or "",
            delegator=detail(steps, "requested", "delegator") or "",
            amount=units(op.amount, op.asset) or "0",
            amount_minor=str(op.amount),
            staked=units(left, op.asset) or "0",
            staked_minor=str(left),
            state=op.state,
            position=position(op, unstakes, reduced),
            slashed_minor=str(slashed),
            error_code=op.error_code,
            tx_hash=op.tx_hash,
            fee_minor=None if op.fee is None else str(op.fee),
            requested_by=op.requested_by,
            created_at=op.created_at.isoformat(),
            updated_at=op.updated_at.isoformat(),
            unstakes=[summary(u) for u in unstakes if u.kind == "unstake"],
            redelegations=[
                RedelegationSummary(
                    redelegation_id=r.id,
                    validator=r.destination or "",
                    amount=units(r.amount, r.asset) or "0",
                    amount_minor=str(r.amount),
                    state=r.state,
                )
                for r in unstakes
                if r.kind == "redelegation"
            ],
            timeline=steps if timeline else [],
        )

    def a_stake(op: OperationRecord) -> StakeView:
        assert op.client_id is not None
        return stake_view(op, of_stake(op.id, stakes().unstakes(op.client_id)))

    def unstake_view(op: OperationRecord) -> UnstakeView:
        steps = platform.operations.timeline(op.id)
        return UnstakeView(
            unstake_id=op.id,
            stake_id=detail(steps, "requested", "stake_id") or "",
            client_id=op.client_id or "",
            asset=op.asset,
            validator=op.destination or "",
            amount=units(op.amount, op.asset) or "0",
            amount_minor=str(op.amount),
            state=op.state,
            error_code=op.error_code,
            completion_time=detail(steps, "unbonding", "completion_time"),
            released_minor=detail(steps, "completed", "released"),
            slashed_minor=detail(steps, "completed", "slashed"),
            tx_hash=op.tx_hash,
            fee_minor=None if op.fee is None else str(op.fee),
            requested_by=op.requested_by,
            created_at=op.created_at.isoformat(),
            updated_at=op.updated_at.isoformat(),
            timeline=steps,
        )

    def stakes() -> Stakes:
        found: Stakes = state["stakes"]
        return found

    # --- stakes ------------------------------------------------------------------------
    @router.post(
        "/v1/clients/{client_id}/stakes",
        status_code=202,
        responses=started(StakeView, "the stake"),
        openapi_extra={"parameters": SIGNATURE_PARAMETERS},
    )
    async def create_stake(
        client_id: str,
        body: StakeBody,
        who: Who,
        key: Key,
        response: Response,
        signed: Signed,
    ) -> StakeView:
        """Stake ATOM with a validator on the allow-list: a stake saga, named by the
        Idempotency-Key. Signed like a withdrawal by a key governance registered to the
        client (`Custody-*` headers; 401 CUS-3103 otherwise), over exactly `asset`,
        `amount` and `validator`: the signer checks that signature again before it
        delegates. 202 at once with its state so far (`requested`): poll Location. A
        replay returns the same stake as it is now (200)."""
        who.may_see(client_id)
        who.must_be("client", "operator")
        op, created = await stakes().create(client_id, key, body, who.sub, signed)
        poll_at(response, f"/v1/stakes/{op.id}", created)
        return await asyncio.to_thread(a_stake, op)

    @router.get("/v1/clients/{client_id}/stakes")
    def list_stakes(client_id: str, who: Who) -> list[StakeView]:
        """The client's positions, its stakes and redelegations (newest first), each with
        its position, its unstakes and its redelegations out."""
        who.may_see(client_id)
        known_client(client_id)
        unstakes = stakes().unstakes(client_id)
        held = [
            op for kind in POSITION_OPS for op in platform.operations.for_client(client_id, kind)
        ]
        return [
            stake_view(op, of_stake(op.id, unstakes), False)
            for op in sorted(held, key=lambda op: op.created_at, reverse=True)
        ]

    @router.get("/v1/stakes/{stake_id}")
    def get_stake(stake_id: str, who: Who) -> StakeView:
        """The position (a stake or a redelegation): its unstakes, its redelegations out
        and its timeline of steps."""
        return a_stake(own(who, stake_id, "stake"))

    # --- unstakes ----------------------------------------------------------------------
    @router.post(
        "/v1/stakes/{stake_id}/unstake",
        status_code=202,
        responses=started(UnstakeView, "the unstake"),
        openapi_extra={"parameters": SIGNATURE_PARAMETERS},
    )
    async def create_unstake(
        stake_id: str,
        body: UnstakeBody,
        who: Who,
        key: Key,
        response: Response,
        signed: Signed,
    ) -> UnstakeView:
        """Undelegate (part of) an active stake: an unstake saga, named by the stake and
        the Idempotency-Key, signed by the client over exactly `amount` (401 CUS-3103
        otherwise). At most what is still staked of it (422 CUS-1001); the stake must be
        active (409 CUS-3009). The chain returns it after its unbonding time. 202 at once:
        poll Location; a replay is 200."""
        who.must_be("client", "operator")
        stake = await asyncio.to_thread(own, who, stake_id, "stake")
        op, created = await stakes().unstake(stake, key, body, who.sub, signed)
        poll_at(response, f"/v1/unstakes/{op.id}", created)
        return await asyncio.to_thread(unstake_view, op)

    # --- redelegations -----------------------------------------------------------------
    @router.post(
        "/v1/stakes/{stake_id}/redelegate",
        status_code=202,
        responses=started(StakeView, "the redelegation (a position of its own)"),
        openapi_extra={"parameters": SIGNATURE_PARAMETERS},
    )
    async def create_redelegation(
        stake_id: str,
        body: RedelegateBody,
        who: Who,
        key: Key,
        response: Response,
        signed: Signed,
    ) -> StakeView:
        """Move (part of) an active position to another validator on the allow-list at
        once, without unbonding: a redelegation saga, named by the position and the
        Idempotency-Key, signed by the client over exactly `amount` and `validator` (401
        CUS-3103 otherwise; the signer checks it again, and that the position is the
        client's and with the validator it moves from). At most what is still staked of
        it (422 CUS-1001); the position must be active and its validator not one a
        redelegation of the client's moved into until that one completes (409 CUS-3009);
        another allowed validator (422 CUS-3001). 202 at once with the new position: poll
        Location; a replay is 200."""
        who.must_be("client", "operator")
        position_op = await asyncio.to_thread(own, who, stake_id, "stake")
        op, created = await stakes().redelegate(position_op, key, body, who.sub, signed)
        poll_at(response, f"/v1/stakes/{op.id}", created)
        return await asyncio.to_thread(a_stake, op)

    @router.get("/v1/unstakes/{unstake_id}")
    def get_unstake(unstake_id: str, who: Who) -> UnstakeView:
        """The unstake with its completion time, what came back and its timeline."""
        return unstake_view(own(who, unstake_id, "unstake"))

    # --- approvals ---------------------------------------------------------------------
    def intent_of(who: Principal, op_id: str, kind: str) -> StakingIntentView:
        op = own(who, op_id, kind)
        stored = platform.intents.intent(op_id, intent_kind(op.kind))
        if stored is None:
            raise InvalidState(f"{op_id} has no intent yet: poll the {kind}")
        intent, required = stored
        return StakingIntentView(
            intent=json.loads(intent.canonical()),
            intent_hash=intent.hash(),
            approvals_required=required,
            approvals=[a.model_dump() for a in platform.intents.approvals(intent.hash())],
        )

    async def approve(
        kind: str, op_id: str, body: Approval, request: Request, who: Principal, key: str
    ) -> Any:
        """Keep the approval once per (caller, path, key) and tell the saga; the tally."""
        who.must_be("operator")
        op = await asyncio.to_thread(own, who, op_id, kind)

        async def compute() -> tuple[int, BaseModel]:
            view = await asyncio.to_thread(take_approval, platform, op, body, who.sub)
            # The saga counts again (it verifies every signature itself); if it ended
            # meanwhile there is nothing to tell.
            with contextlib.suppress(RPCError):
                await stakes().handle(op).signal("approvals_changed")
            return 200, view

        answer = await remembered(who, request, key, body, compute)
        answer.headers["Location"] = f"/v1/{kind}s/{op_id}"
        return answer

    approved: dict[int | str, dict[str, Any]] = {
        200: {"model": ApprovalView, "description": "counted: the tally", "headers": LOCATION}
    }

    @router.get("/v1/stakes/{stake_id}/intent", tags=["approvals"])
    def get_stake_intent(stake_id: str, who: Who) -> StakingIntentView:
        """What an approval of the stake (or redelegation) signs: its intent (RFC 8785
        canonical JSON) and hash, with the approvals handed in so far. 409 before the
        policy decided."""
        return intent_of(who, stake_id, "stake")

    @router.get("/v1/unstakes/{unstake_id}/intent", tags=["approvals"])
    def get_unstake_intent(unstake_id: str, who: Who) -> StakingIntentView:
        """What an approval of the unstake signs (as a stake's)."""
        return intent_of(who, unstake_id, "unstake")

    @router.post("/v1/stakes/{stake_id}/approvals", tags=["approvals"], responses=approved)
    async def approve_stake(
        stake_id: str, body: Approval, request: Request, who: Who, key: Key
    ) -> ApprovalView:
        """Hand in an approval of the stake (or redelegation): the calling operator's
        Ed25519 signature over its intent hash (`custody operator sign`), checked as a
        withdrawal's (CUS-2005, CUS-2007, CUS-3102, CUS-2002 the requester, CUS-3009 not
        awaiting approval). The signer verifies every approval again before it signs. 200
        with the tally."""
        answer: ApprovalView = await approve("stake", stake_id, body, request, who, key)
        return answer

    @router.post("/v1/unstakes/{unstake_id}/approvals", tags=["approvals"], responses=approved)
    async def approve_unstake(
        unstake_id: str, body: Approval, request: Request, who: Who, key: Key
    ) -> ApprovalView:
        """Hand in an approval of the unstake (as a stake's). 200 with the tally."""
        answer: ApprovalView = await approve("unstake", unstake_id, body, request, who, key)
        return answer

    # --- validators --------------------------------------------------------------------
    @router.get("/v1/staking/validators")
    def validators(who: Who) -> list[ValidatorView]:
        """The validators clients may delegate to (the platform's allow-list), each as the
        chain reports it now: status, jailed, bonded tokens. 503 if the node does not
        answer."""
        out = []
        for operator in platform.settings.allowed_validators():
            try:
                v = platform.cosmos.validator(operator)
            except (UnknownValidator, QueryRefused):
                out.append(ValidatorView(operator_address=operator, status="unknown"))
                continue
            out.append(
                ValidatorView(
                    operator_address=operator,
                    status=v.status,
                    jailed=v.jailed,
                    tokens=units(v.tokens, "ATOM"),
                    tokens_minor=str(v.tokens),
                )
            )
        return out

    return router
