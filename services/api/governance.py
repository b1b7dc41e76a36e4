"""Governance routes of the REST API: proposals of governance changes, operators'
signed approvals, and the verified governance state (decision 0014).

The API only carries signatures: a proposal applies when a quorum of registered
operators other than the proposer have signed its intent hash with their own keys
(`custody operator approve`), and every reader verifies the chain from the genesis.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from sagas.errors import NotFound
from sagas.governance import Proposal, VerifiedGovernance
from sagas.intents import Approval
from services.api.deps import Key, Who
from services.api.openapi import LOCATION, Integer
from services.api.trading import Remember
from services.platform import Platform

_POSITIVE = r"^[1-9][0-9]{0,77}$"
_NATURAL = r"^(0|[1-9][0-9]{0,77})$"
_HEX_KEY = r"^[0-9a-f]{64}$"
_PRINTABLE = r"^[\x21-\x7e]{1,128}$"
_OPERATOR = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_CLIENT = r"^[a-z0-9][a-z0-9-]{0,39}$"
Asset = Literal["BTC", "ETH", "CTUSD"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PolicyRecord(_Strict):
    """A policy as a governance record: amounts in minor units, as decimal strings."""

    per_transaction_limit: str | None = Field(default=None, pattern=_POSITIVE)
    daily_velocity_limit: str | None = Field(default=None, pattern=_POSITIVE)
    allow_list_required: bool = False
    allowed_destinations: list[Annotated[str, Field(pattern=_PRINTABLE)]] = Field(
        default_factory=list, max_length=1000
    )
    approval_threshold: str | None = Field(default=None, pattern=_NATURAL)
    approval_quorum: Integer = Field(default=2, ge=1, le=10)
    screening_required: bool = True


class AllowListRecord(_Strict):
    action: Literal["add", "remove"]
    destination: str = Field(pattern=_PRINTABLE)


class BankAccountRecord(_Strict):
    iban: str = Field(pattern=r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$")
    bic: str = Field(pattern=r"^[A-Z0-9]{8}([A-Z0-9]{3})?$")


class KeyRecord(_Strict):
    action: Literal["add", "remove"]
    public_key: str = Field(pattern=_HEX_KEY, description="raw Ed25519 public key, hex")


class AddOperator(_Strict):
    action: Literal["add"]
    name: str = Field(pattern=_OPERATOR)
    public_key: str = Field(pattern=_HEX_KEY)


class RemoveOperator(_Strict):
    action: Literal["remove"]
    name: str = Field(pattern=_OPERATOR)


class SetQuorum(_Strict):
    action: Literal["set_quorum"]
    quorum: Integer = Field(ge=2, le=10)


class PolicyChange(_Strict):
    kind: Literal["policy_change"]
    client_id: str = Field(pattern=_CLIENT)
    asset: Asset
    record: PolicyRecord


class AllowListChange(_Strict):
    kind: Literal["allow_list_change"]
    client_id: str = Field(pattern=_CLIENT)
    asset: Asset
    record: AllowListRecord


class BankAccountChange(_Strict):
    kind: Literal["bank_account_change"]
    client_id: str = Field(pattern=_CLIENT)
    record: BankAccountRecord


class ClientKeyChange(_Strict):
    kind: Literal["client_key_change"]
    client_id: str = Field(pattern=_CLIENT)
    record: KeyRecord


class CounterpartyKeyChange(_Strict):
    kind: Literal["counterparty_key_change"]
    client_id: str = Field(pattern=_CLIENT, description="the liquidity provider's name")
    record: KeyRecord


class OperatorKeyChange(_Strict):
    kind: Literal["operator_key_change"]
    record: Annotated[AddOperator | RemoveOperator | SetQuorum, Field(discriminator="action")]


ProposalBody = Annotated[
    PolicyChange
    | AllowListChange
    | BankAccountChange
    | ClientKeyChange
    | CounterpartyKeyChange
    | OperatorKeyChange,
    Field(discriminator="kind"),
]


class OperatorView(BaseModel):
    name: str
    key_id: str
    public_key: str = Field(description="raw Ed25519 public key, hex")


class ClientKeyView(BaseModel):
    client_id: str
    key_id: str
    public_key: str


class PolicyVersionView(BaseModel):
    client_id: str
    asset: str
    version: int


class BankAccountRecordView(BaseModel):
    client_id: str
    iban: str
    bic: str
    version: int


class GovernanceView(BaseModel):
    genesis_hash: str = Field(description="the genesis pinned in settings")
    head: str = Field(description="the hash of the last verified record")
    seq: int = Field(description="how many records are verified")
    quorum: int = Field(description="valid approvals a change needs, the proposer's aside")
    operators: list[OperatorView]
    client_keys: list[ClientKeyView]
    counterparty_keys: list[ClientKeyView] = Field(
        default_factory=list,
        description="the liquidity providers' settlement-confirmation keys (client_id: "
        "the provider)",
    )
    policies: list[PolicyVersionView]
    bank_accounts: list[BankAccountRecordView]
    failure: str | None = Field(
        default=None, description="where verification stopped: later records count for nothing"
    )


PROPOSED: dict[int | str, dict[str, Any]] = {
    202: {
        "model": Proposal,
        "description": "proposed: it takes effect once a quorum of operators has approved "
        "its intent hash (POST .../approvals); poll Location",
        "headers": LOCATION,
    }
}


def summary(state: VerifiedGovernance) -> GovernanceView:
    return GovernanceView(
        genesis_hash=state.genesis_hash,
        head=state.head,
        seq=state.seq,
        quorum=state.quorum(),
        operators=sorted(
            (
                OperatorView(name=k.owner, key_id=k.key_id, public_key=k.public_key.hex())
                for k in state.operators().values()
            ),
            key=lambda o: (o.name, o.key_id),
        ),
        client_keys=sorted(
            (
                ClientKeyView(client_id=k.owner, key_id=k.key_id, public_key=k.public_key.hex())
                for k in state.client_keys().values()
            ),
            key=lambda k: (k.client_id, k.key_id),
        ),
        counterparty_keys=sorted(
            (
                ClientKeyView(client_id=k.owner, key_id=k.key_id, public_key=k.public_key.hex())
                for k in state.counterparty_keys().values()
            ),
            key=lambda k: (k.client_id, k.key_id),
        ),
        policies=[
            PolicyVersionView(client_id=c, asset=a, version=p.version)
            for (c, a), p in sorted(state.policies.items())
        ],
        bank_accounts=[
            BankAccountRecordView(client_id=c, iban=b.iban, bic=b.bic, version=b.version)
            for c, b in sorted(state.bank_accounts.items())
        ],
        failure=None if state.failure is None else str(state.failure),
    )


def proposed(proposal: Proposal, status: int = 202) -> JSONResponse:
    return JSONResponse(
        proposal.model_dump(mode="json"),
        status_code=status,
        headers={"Location": f"/v1/governance/proposals/{proposal.id}"},
    )


def governance_routes(
    platform: Platform, remembered: Remember, known_client: Callable[[str], object]
) -> APIRouter:
    router = APIRouter(tags=["governance"])
    ttl = platform.settings.governance_proposal_ttl_seconds

    def propose(body: BaseModel, who: str) -> Proposal:
        fields = body.model_dump(mode="json")
        client_id = fields.get("client_id")
        if fields["kind"] == "counterparty_key_change":
            if client_id not in platform.settings.counterparties():
                raise NotFound(f"counterparty {client_id}")
        elif client_id is not None:
            known_client(client_id)
        return platform.governance.propose(
            fields["kind"],
            fields["record"],
            who,
            client_id,
            fields.get("asset") or "",
            timedelta(seconds=ttl),
        )

    @router.post("/v1/governance/proposals", status_code=202, responses=PROPOSED)
    async def create_proposal(body: ProposalBody, request: Request, who: Who, key: Key) -> Proposal:
        """Propose a governance change (operators). 202 with the proposal and its intent,
        whose hash the approving operators sign. A proposal links to the latest record:
        if another change is applied first, it is refused as stale (CUS-2009)."""
        who.must_be("operator")

        async def compute() -> tuple[int, BaseModel]:
            return 202, await asyncio.to_thread(propose, body, who.sub)

        answer = await remembered(who, request, key, body, compute)
        answer.headers["Location"] = f"/v1/governance/proposals/{answer_id(answer)}"
        return answer  # type: ignore[return-value]

    @router.get("/v1/governance/proposals/{proposal_id}")
    def get_proposal(proposal_id: str, who: Who) -> Proposal:
        """The proposal with the intent to sign and the approvals collected (operators,
        auditors)."""
        who.must_be("operator", "auditor")
        found = platform.governance.proposal(proposal_id)
        if found is None:
            raise NotFound(f"proposal {proposal_id}")
        return found

    @router.post(
        "/v1/governance/proposals/{proposal_id}/approvals",
        responses={200: {"model": Proposal, "description": "counted", "headers": LOCATION}},
    )
    def approve(
        proposal_id: str, body: Approval, who: Who, _key: Key, response: Response
    ) -> Proposal:
        """Add an operator's signature over the proposal's intent hash (the bearer only
        carries it: the signature is what counts). Applied at once when the quorum is met.
        Refused: CUS-2005 (not a valid signature by a registered operator key), CUS-2006
        (the proposer's), CUS-2007 (over another intent), CUS-2002 (the operator approved
        already), CUS-2008 (expired), CUS-2009 (stale), CUS-3009 (no longer pending)."""
        who.must_be("operator")
        result = platform.governance.approve(proposal_id, body)
        response.headers["Location"] = f"/v1/governance/proposals/{proposal_id}"
        return result

    @router.get("/v1/governance")
    def governance(who: Who) -> GovernanceView:
        """The governance state verified from the genesis: operators, quorum, client keys,
        policy versions, bank accounts, and where verification stopped if it did."""
        who.must_be("operator", "auditor")
        return summary(platform.governance.state())

    return router


def answer_id(answer: JSONResponse) -> str:
    return str(json.loads(bytes(answer.body))["id"])
