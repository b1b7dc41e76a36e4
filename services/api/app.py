"""The REST API (FastAPI): clients and accounts, deposit addresses, balances, withdrawals
with their timeline, approvals, policies, saga status and a server-sent event stream.

Every POST needs an Idempotency-Key. Errors are RFC 9457 problem+json with the
platform's stable codes (docs/errors.md). Amounts are decimal strings in the
asset's unit, never JSON numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import (
    Client,
)
from temporalio.service import RPCError

from adapters.kafka.tail import EventTail
from adapters.operations.store import SqlIdempotencyStore
from adapters.sqldb import DatabaseUnavailable, SqlDatabase
from sagas import accounts
from sagas.errors import (
    BodyTooLarge,
    CustodyError,
    IdempotencyConflict,
    InvalidAmount,
    InvalidState,
    NotFound,
    UnknownAsset,
)
from sagas.events import Envelope
from sagas.governance import RESERVED_HOLDERS, Proposal, policy_record
from sagas.intents import Approval as SignedApproval
from sagas.ledger import Balance
from sagas.money import format_units
from sagas.operations import OperationRecord, Step, request_hash
from sagas.policy import PolicyRules, StoredPolicy
from sagas.withdrawal import ApprovalView, OperatorDecision
from services.api.auth import Principal, load_secret
from services.api.deps import SIGNATURE_PARAMETERS, Key, Signed, Who
from services.api.governance import PROPOSED, governance_routes, proposed
from services.api.openapi import LOCATION, Integer, install, poll_at, started
from services.api.problems import (
    Problem,
    custody_error,
    database_error,
    http_error,
    problem,
    unexpected,
    validation_error,
)
from services.api.staking import staking_routes
from services.api.trading import trading_routes
from services.app.approvals import take_approval
from services.app.decisions import check_bump
from services.app.stakes import Stakes
from services.app.trades import Trades
from services.app.withdrawals import WithdrawalBody, Withdrawals, parse_amount
from services.platform import ASSETS, Platform

MAX_BODY = 64 * 1024
API_THREADS = int(os.environ.get("CUSTODY_DB_POOL_SIZE", "24"))  # sqldb's pool size
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {"application/problem+json": {}}}
    for code in (400, 401, 403, 404, 409, 413, 422, 503)
}


# --- response models -----------------------------------------------------------------
class ClientBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    client_id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$", examples=["acme-treasury"])
    name: str = Field(min_length=1, max_length=200, examples=["ACME Treasury Ltd"])


class BalanceView(BaseModel):
    account_id: str = Field(examples=["client:acme-treasury:BTC"])
    asset: str = Field(examples=["BTC"])
    decimals: int = Field(examples=[8])
    total: str = Field(examples=["1.5"], description="posted credits less posted debits")
    available: str = Field(examples=["1.25"], description="total less what is held")
    held: str = Field(examples=["0.25"], description="reserved by withdrawals in progress")
    total_minor: str = Field(examples=["150000000"])
    available_minor: str = Field(examples=["125000000"])


class ClientView(BaseModel):
    client_id: str
    name: str
    balances: list[BalanceView]


class AddressBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    asset: str = Field(min_length=1, max_length=12, examples=["BTC"])


class AddressView(BaseModel):
    address: str = Field(examples=["sb1q..."])
    chain: str = Field(examples=["bitcoin"])
    asset: str = Field(examples=["BTC"])
    note: str = Field(default="", examples=["tokens share the client's Ethereum address"])


class WithdrawalView(BaseModel):
    operation_id: str = Field(examples=["wd:acme-treasury:inv-2026-0042"])
    client_id: str
    asset: str
    amount: str = Field(examples=["0.25"])
    amount_minor: str = Field(examples=["25000000"])
    destination: str
    state: str = Field(examples=["awaiting_approval"])
    error_code: str | None = Field(default=None, examples=[None])
    tx_hash: str | None = None
    fee_minor: str | None = None
    requested_by: str
    created_at: str
    updated_at: str
    timeline: list[Step] = Field(default_factory=list)


class ApprovalBody(BaseModel):
    """An operator's approval: an Ed25519 signature over the intent hash (base64url)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    version: Literal["custody.approval.v1"] = "custody.approval.v1"
    intent_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    key_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    signature: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")


class IntentView(BaseModel):
    intent: dict[str, Any] = Field(description="the intent, as RFC 8785 canonical JSON reads")
    intent_hash: str = Field(description="SHA-256 over custody.intent.v1\\n + canonical JSON")
    approvals_required: int
    approvals: list[dict[str, Any]] = Field(description="handed in so far (not all may count)")


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    action: Literal["rebroadcast", "bump", "keep_waiting", "release", "reject"] = Field(
        description="rebroadcast, bump, keep_waiting: a withdrawal stuck past its deadline; "
        "release, reject: one held by screening (compliance review)"
    )
    fee_percent: Integer = Field(default=130, gt=110, le=1000)


class PolicyBody(BaseModel):
    """A client's rules for one asset; amounts are decimal strings in the asset's unit."""

    model_config = ConfigDict(extra="forbid", strict=True)

    per_transaction_limit: str | None = Field(default=None, examples=["10"])
    daily_velocity_limit: str | None = Field(default=None, examples=["25"])
    allow_list_required: bool = False
    allowed_destinations: list[str] = Field(default_factory=list, max_length=1000)
    approval_threshold: str | None = Field(default=None, examples=["1"])
    approval_quorum: Integer = Field(default=2, ge=1, le=10)
    screening_required: bool = True


class PolicyView(BaseModel):
    client_id: str
    asset: str
    version: int
    created_by: str
    created_at: str
    rules: PolicyBody


class TreasuryView(BaseModel):
    ethereum_hot_wallet: str = Field(
        description="ETH and tokens are paid out from here; fund it by sending to it "
        "(the first of ethereum_hot_lanes)"
    )
    ethereum_hot_lanes: list[str] = Field(
        description="every address ETH and tokens are paid out from (the hot wallet's "
        "lanes, CUSTODY_ETH_HOT_LANES): fund each; what they receive is the treasury's"
    )
    accounts: list[BalanceView] = Field(
        description="the platform's own accounts: omnibus (what it holds on chain), "
        "network fees paid, treasury (its own money), quarantine"
    )


class SagaView(BaseModel):
    workflow_id: str
    run_id: str | None
    workflow_type: str
    status: str = Field(examples=["RUNNING"])
    stage: str | None = Field(default=None, examples=["awaiting_approval"])
    started_at: str | None
    closed_at: str | None


# --- body size limit ---------------------------------------------------------------------
class BodyLimit:
    """Refuse bodies over MAX_BODY with 413 problem+json, declared or streamed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_big = BodyTooLarge(f"the limit is {MAX_BODY} bytes")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
            await problem(too_big, scope.get("path"))(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > MAX_BODY:
                raise _TooBig()
            return message

        try:
            await self.app(scope, limited, send)
        except _TooBig:
            await problem(too_big, scope.get("path"))(scope, receive, send)


class _TooBig(Exception):
    pass


# --- the app -------------------------------------------------------------------------------
def create_app(
    platform: Platform,
    temporal: Callable[[], Awaitable[Client]],
    on_ready: Callable[[], None] | None = None,
) -> FastAPI:
    """`temporal` connects the Temporal client (at start-up, on the server's loop);
    `on_ready` is called once start-up is done (the process can answer)."""
    state: dict[str, Any] = {}
    secret = load_secret(platform.settings.api_token_secret_file)
    idem = SqlIdempotencyStore(platform.db_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # asyncio.to_thread's default pool has cpu_count + 4 threads (6 on two cores):
        # under 40 concurrent POSTs their database calls queued there for a second.
        # As many threads as the process has database connections.
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(API_THREADS, thread_name_prefix="api"))
        # The first burst of POSTs would otherwise open every connection at once.
        await asyncio.to_thread(SqlDatabase(platform.db_url).warm, API_THREADS // 2)
        client = await temporal()
        state["temporal"] = client
        state["withdrawals"] = Withdrawals(platform, client)
        state["trades"] = Trades(platform, client)
        state["stakes"] = Stakes(platform, client)
        if on_ready is not None:
            on_ready()
        yield

    app = FastAPI(
        title="Custody platform API",
        version="1",
        summary="Digital-asset custody for banks: accounts, deposits, withdrawals, approvals, "
        "trading against fiat.",
        description=__doc__,
        lifespan=lifespan,
        responses=ERRORS,
    )
    app.state.token_secret = secret
    install(app, platform.settings.counterparties)
    app.add_middleware(BodyLimit)
    app.add_exception_handler(CustodyError, custody_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(DatabaseUnavailable, database_error)
    app.add_exception_handler(Exception, unexpected)

    async def remembered(
        who: Principal,
        request: Request,
        key: str,
        body: BaseModel,
        compute: Callable[[], Awaitable[tuple[int, BaseModel]]],
    ) -> JSONResponse:
        """Answer a POST once per (caller, path, key): a retry gets the first answer."""
        scope = f"{who.sub}|{request.url.path}|{key}"
        digest = request_hash(body.model_dump(mode="json"))
        found = await asyncio.to_thread(idem.get, scope)
        if found is not None:
            if found[0] != digest:
                raise IdempotencyConflict(f"key {key} was used with another body")
            return JSONResponse(json.loads(found[2]), status_code=found[1])
        status, result = await compute()
        payload = result.model_dump_json()
        await asyncio.to_thread(idem.put, scope, digest, status, payload)
        return JSONResponse(json.loads(payload), status_code=status)

    def balances(client_id: str) -> list[BalanceView]:
        return [
            balance_view(accounts.client(client_id, code), asset.decimals)
            for code, (asset, _chain) in ASSETS.items()
        ]

    def balance_view(account_id: str, decimals: int) -> BalanceView:
        bal: Balance = platform.ledger.balance(account_id)
        return BalanceView(
            account_id=bal.account_id,
            asset=bal.asset,
            decimals=decimals,
            total=format_units(bal.total, decimals),
            available=format_units(bal.available, decimals),
            held=format_units(bal.held, decimals),
            total_minor=str(bal.total),
            available_minor=str(bal.available),
        )

    def known_client(client_id: str) -> str:
        name = platform.operations.client(client_id)
        if name is None:
            raise NotFound(f"client {client_id}")
        return name

    def policy_holder(client_id: str) -> str:
        """A client, or one of governance's reserved holders (default, settlement)."""
        return client_id if client_id in RESERVED_HOLDERS else known_client(client_id)

    def withdrawal_view(op: OperationRecord, timeline: bool = True) -> WithdrawalView:
        decimals = ASSETS[op.asset][0].decimals
        return WithdrawalView(
            operation_id=op.id,
            client_id=op.client_id or "",
            asset=op.asset,
            amount=format_units(op.amount, decimals),
            amount_minor=str(op.amount),
            destination=op.destination or "",
            state=op.state,
            error_code=op.error_code,
            tx_hash=op.tx_hash,
            fee_minor=None if op.fee is None else str(op.fee),
            requested_by=op.requested_by,
            created_at=op.created_at.isoformat(),
            updated_at=op.updated_at.isoformat(),
            timeline=platform.operations.timeline(op.id) if timeline else [],
        )

    def own_withdrawal(who: Principal, operation_id: str) -> OperationRecord:
        op = platform.operations.get(operation_id)
        if op is None or op.kind != "withdrawal" or op.client_id is None:
            raise NotFound(f"withdrawal {operation_id}")
        if who.role == "client" and who.client_id != op.client_id:
            raise NotFound(f"withdrawal {operation_id}")  # not even its existence
        return op

    app.include_router(trading_routes(platform, state, remembered))
    app.include_router(staking_routes(platform, state, remembered))
    app.include_router(governance_routes(platform, remembered, policy_holder))

    # --- routes ----------------------------------------------------------------------
    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(
        "/v1/clients",
        status_code=201,
        tags=["clients"],
        responses={
            201: {"model": ClientView, "description": "opened", "headers": LOCATION},
            200: {
                "model": ClientView,
                "description": "a replay (the client exists with this name): the same client",
                "headers": LOCATION,
            },
        },
    )
    def create_client(body: ClientBody, who: Who, _key: Key, response: Response) -> ClientView:
        """Open a client and its accounts in every asset (operators). 201 when opened; 200
        when the client exists with the same name (409 CUS-3005 with another)."""
        who.must_be("operator")
        if body.client_id in RESERVED_HOLDERS:
            raise IdempotencyConflict(f"{body.client_id} is reserved for governance's policies")
        _name, created = platform.operations.create_client(body.client_id, body.name, who.sub)
        platform.open_client_accounts(body.client_id)
        response.status_code = 201 if created else 200
        response.headers["Location"] = f"/v1/clients/{body.client_id}"
        return ClientView(
            client_id=body.client_id, name=body.name, balances=balances(body.client_id)
        )

    @app.get("/v1/clients/{client_id}", tags=["clients"])
    def get_client(client_id: str, who: Who) -> ClientView:
        who.may_see(client_id)
        name = known_client(client_id)
        return ClientView(client_id=client_id, name=name, balances=balances(client_id))

    @app.get("/v1/clients/{client_id}/balances", tags=["clients"])
    def get_balances(client_id: str, who: Who) -> list[BalanceView]:
        who.may_see(client_id)
        known_client(client_id)
        return balances(client_id)

    @app.post("/v1/clients/{client_id}/deposit-addresses", status_code=201, tags=["deposits"])
    def deposit_address(client_id: str, body: AddressBody, who: Who, _key: Key) -> AddressView:
        """The client's deposit address for an asset (the same one on every call).
        Tokens share the client's Ethereum address."""
        who.may_see(client_id)
        who.must_be("client", "operator")
        known_client(client_id)
        if body.asset not in ASSETS:
            raise UnknownAsset(body.asset)
        assignment = platform.client_address(client_id, body.asset)
        note = "" if body.asset in ("BTC", "ETH") else "the client's Ethereum address"
        return AddressView(
            address=assignment.address, chain=assignment.chain, asset=body.asset, note=note
        )

    @app.get("/v1/clients/{client_id}/deposits", tags=["deposits"])
    def list_deposits(client_id: str, who: Who) -> list[WithdrawalView]:
        who.may_see(client_id)
        known_client(client_id)
        return [
            withdrawal_view(op, False)
            for op in platform.operations.for_client(client_id, "deposit")
        ]

    @app.post(
        "/v1/clients/{client_id}/withdrawals",
        status_code=202,
        tags=["withdrawals"],
        responses=started(WithdrawalView, "the withdrawal"),
        openapi_extra={"parameters": SIGNATURE_PARAMETERS},
    )
    async def create_withdrawal(
        client_id: str,
        body: WithdrawalBody,
        who: Who,
        key: Key,
        response: Response,
        signed: Signed,
    ) -> WithdrawalView:
        """Start a withdrawal saga; the Idempotency-Key names it. The request is signed by
        a key governance registered to the client (`Custody-*` headers, docs/security.md;
        401 CUS-3103 otherwise): the signer checks that signature again before it pays.
        202 at once with its state so far (`requested`; then `reserved` or `rejected`,
        ...): poll Location. A replay returns the same saga as it is now (200)."""
        who.may_see(client_id)
        who.must_be("client", "operator")
        op, created = await state["withdrawals"].create(client_id, key, body, who.sub, signed)
        poll_at(response, f"/v1/withdrawals/{op.id}", created)
        return await asyncio.to_thread(withdrawal_view, op)

    @app.get("/v1/clients/{client_id}/withdrawals", tags=["withdrawals"])
    def list_withdrawals(client_id: str, who: Who) -> list[WithdrawalView]:
        who.may_see(client_id)
        known_client(client_id)
        return [withdrawal_view(op, False) for op in platform.operations.for_client(client_id)]

    @app.get("/v1/withdrawals/{operation_id}", tags=["withdrawals"])
    def get_withdrawal(operation_id: str, who: Who) -> WithdrawalView:
        """The withdrawal with its timeline of steps."""
        return withdrawal_view(own_withdrawal(who, operation_id))

    @app.get("/v1/withdrawals/{operation_id}/intent", tags=["approvals"])
    def get_intent(operation_id: str, who: Who) -> IntentView:
        """What an approval signs: the withdrawal's intent (RFC 8785 canonical JSON) and its
        hash, with the approvals handed in so far. 409 before the policy decided."""
        own_withdrawal(who, operation_id)
        stored = platform.intents.intent(operation_id)
        if stored is None:
            raise InvalidState(f"{operation_id} has no intent yet: poll the withdrawal")
        intent, required = stored
        return IntentView(
            intent=json.loads(intent.canonical()),
            intent_hash=intent.hash(),
            approvals_required=required,
            approvals=[a.model_dump() for a in platform.intents.approvals(intent.hash())],
        )

    @app.post(
        "/v1/withdrawals/{operation_id}/approvals",
        tags=["approvals"],
        responses={
            200: {"model": ApprovalView, "description": "counted: the tally", "headers": LOCATION},
        },
    )
    async def approve(
        operation_id: str, body: ApprovalBody, request: Request, who: Who, key: Key
    ) -> ApprovalView:
        """Hand in an approval: the calling operator's Ed25519 signature over the
        withdrawal's intent hash (`custody operator sign`). It counts only if it is valid,
        by a key registered to this operator in governance, and the operator is not the
        requester and has not approved already (CUS-2010, CUS-3102, CUS-2002). The signer
        verifies every approval again before it signs. 200 with the tally."""
        who.must_be("operator")
        op = await asyncio.to_thread(own_withdrawal, who, operation_id)
        approval = SignedApproval(**body.model_dump())

        async def compute() -> tuple[int, BaseModel]:
            view = await asyncio.to_thread(take_approval, platform, op, approval, who.sub)
            # The saga counts again (it verifies every signature itself); if it ended
            # meanwhile there is nothing to tell.
            with contextlib.suppress(RPCError):
                await state["withdrawals"].handle(operation_id).signal("approvals_changed")
            return 200, view

        answer = await remembered(who, request, key, body, compute)
        answer.headers["Location"] = f"/v1/withdrawals/{operation_id}"
        return answer  # type: ignore[return-value]

    @app.post("/v1/withdrawals/{operation_id}/decisions", status_code=202, tags=["approvals"])
    async def decide(
        operation_id: str, body: DecisionBody, request: Request, who: Who, key: Key
    ) -> OperatorDecision:
        """An operator's decision on a withdrawal stuck past its deadline, or compliance's
        on one held because its destination was a screening hit."""
        who.must_be("operator")
        op = await asyncio.to_thread(own_withdrawal, who, operation_id)

        decision = OperatorDecision(
            operator=who.sub,
            action=body.action,
            fee_percent=body.fee_percent,
            decision_id=f"{who.sub}:{key}",
        )

        async def compute() -> tuple[int, BaseModel]:
            # Checked on the first request only: a replay answers as the first time did,
            # not against the fees a bump it made has raised since (nor the state now).
            review = body.action in ("release", "reject")
            if review != (op.state == "held"):
                what = "held by screening" if review else "stuck (it is held by screening)"
                raise InvalidState(f"{operation_id} is not {what}: {op.state}")
            if body.action == "bump":
                cap = platform.settings.signer_max_fee_per_gas
                await asyncio.to_thread(check_bump, platform.db_url, op, body.fee_percent, cap)
            try:
                await (
                    state["withdrawals"].handle(operation_id).signal("operator_decision", decision)
                )
            except RPCError as exc:
                raise InvalidState(f"the saga is not running: {exc}") from None
            return 202, decision

        return await remembered(who, request, key, body, compute)  # type: ignore[return-value]

    def policy_view(stored: StoredPolicy) -> PolicyView:
        r = stored.rules
        decimals = ASSETS[r.asset][0].decimals

        def fmt(v: int | None) -> str | None:
            return None if v is None else format_units(v, decimals)

        return PolicyView(
            client_id=r.client_id,
            asset=r.asset,
            version=stored.version,
            created_by=stored.created_by,
            created_at=stored.created_at.isoformat(),
            rules=PolicyBody(
                per_transaction_limit=fmt(r.per_transaction_limit),
                daily_velocity_limit=fmt(r.daily_velocity_limit),
                allow_list_required=r.allow_list_required,
                allowed_destinations=sorted(r.allowed_destinations),
                approval_threshold=fmt(r.approval_threshold),
                approval_quorum=r.approval_quorum,
                screening_required=r.screening_required,
            ),
        )

    @app.get("/v1/clients/{client_id}/policies/{asset}", tags=["policies"])
    def get_policy(client_id: str, asset: str, who: Who) -> PolicyView:
        who.may_see(client_id)
        policy_holder(client_id)
        stored = platform.policies.current(client_id, asset) if asset in ASSETS else None
        if stored is None:
            raise NotFound(f"no policy for {client_id} in {asset}")
        return policy_view(stored)

    @app.put(
        "/v1/clients/{client_id}/policies/{asset}",
        tags=["policies"],
        status_code=202,
        responses={
            **PROPOSED,
            200: {"model": PolicyView, "description": "unchanged: these are the current rules"},
        },
    )
    def put_policy(client_id: str, asset: str, body: PolicyBody, who: Who) -> Proposal:
        """Propose the client's rules for an asset (operators): 202 with a governance
        proposal (policy_change) that takes effect, as the next version, once a quorum of
        operators has approved it; 200 with the policy if the rules are the current ones."""
        who.must_be("operator")
        policy_holder(client_id)  # a client, or governance's default or settlement rules
        if asset not in ASSETS:
            raise UnknownAsset(asset)
        decimals = ASSETS[asset][0].decimals

        def units(v: str | None, name: str) -> int | None:
            if v is None:
                return None
            n = parse_amount(v, asset, decimals, name)
            if n <= 0 and name != "approval_threshold":
                raise InvalidAmount(f"{name} must be more than zero")
            return n

        rules = PolicyRules(
            client_id=client_id,
            asset=asset,
            per_transaction_limit=units(body.per_transaction_limit, "per_transaction_limit"),
            daily_velocity_limit=units(body.daily_velocity_limit, "daily_velocity_limit"),
            allow_list_required=body.allow_list_required,
            allowed_destinations=frozenset(body.allowed_destinations),
            approval_threshold=units(body.approval_threshold, "approval_threshold"),
            approval_quorum=body.approval_quorum,
            screening_required=body.screening_required,
        )
        current = platform.policies.current(client_id, asset)
        if current is not None and current.rules == rules:
            return JSONResponse(policy_view(current).model_dump(mode="json"))  # type: ignore[return-value]
        proposal = platform.governance.propose(
            "policy_change",
            policy_record(rules),
            who.sub,
            client_id,
            asset,
            timedelta(seconds=platform.settings.governance_proposal_ttl_seconds),
        )
        return proposed(proposal)  # type: ignore[return-value]

    @app.get("/v1/treasury", tags=["ops"])
    def treasury(who: Who) -> TreasuryView:
        """The platform's own accounts and hot wallet (operators and auditors). An asset
        account (omnibus, fees) shows its holdings as a negative total: it is debit-normal."""
        who.must_be("operator", "auditor")
        views = [
            balance_view(name(code), asset.decimals)
            for code, (asset, _chain) in ASSETS.items()
            for name, _kind in accounts.PLATFORM_ACCOUNTS
        ]
        lanes = [hot.address for hot in platform.hot_wallets()]
        return TreasuryView(ethereum_hot_wallet=lanes[0], ethereum_hot_lanes=lanes, accounts=views)

    @app.get("/v1/sagas/{workflow_id}", tags=["ops"])
    async def saga(workflow_id: str, who: Who) -> SagaView:
        """A saga's status on Temporal (operators and auditors; clients their own)."""
        op = await asyncio.to_thread(platform.operations.get, workflow_id)
        if op is None or (who.role == "client" and who.client_id != op.client_id):
            raise NotFound(f"saga {workflow_id}")
        handle = state["temporal"].get_workflow_handle(workflow_id)
        try:
            d = await handle.describe()
        except RPCError as exc:
            raise NotFound(f"saga {workflow_id}: {exc}") from None
        stage = None
        if d.status is not None and d.status.name == "RUNNING" and op.kind == "withdrawal":
            try:
                stage = await handle.query("stage", result_type=str)
            except RPCError:
                stage = None
        return SagaView(
            workflow_id=workflow_id,
            run_id=d.run_id,
            workflow_type=d.workflow_type,
            status=d.status.name if d.status is not None else "UNKNOWN",
            stage=stage or op.state,
            started_at=d.start_time.isoformat() if d.start_time else None,
            closed_at=d.close_time.isoformat() if d.close_time else None,
        )

    @app.get(
        "/v1/clients/{client_id}/events",
        tags=["events"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def events(
        client_id: str,
        who: Who,
        start: Annotated[Literal["beginning", "now"], Query(alias="from")] = "now",
        limit: Annotated[int | None, Query(ge=1, le=100000)] = None,
        idle_seconds: Annotated[float | None, Query(gt=0, le=3600)] = None,
    ) -> StreamingResponse:
        """Server-sent events: the client's events from the events topic, as they come
        (`from=beginning` replays its history). Ends after `limit` events or
        `idle_seconds` without one, if given."""
        who.may_see(client_id)
        await asyncio.to_thread(known_client, client_id)
        return StreamingResponse(
            _stream(platform, client_id, start, limit, idle_seconds),
            media_type="text/event-stream",
        )

    return app


def _mine(event: Envelope, client_id: str) -> bool:
    return event.data.get("client_id") == client_id or event.subject.startswith(
        f"client:{client_id}:"
    )


async def _stream(
    platform: Platform, client_id: str, start: str, limit: int | None, idle: float | None
) -> AsyncIterator[bytes]:
    tail = EventTail(
        platform.settings.kafka_client("api"), "beginning" if start == "beginning" else "end"
    )
    try:
        await tail.open()  # before "connected": an event after it is seen
        sent = 0
        quiet = 0.0
        yield b": connected\n\n"
        while limit is None or sent < limit:
            event = await tail.next(0.5)
            if event is None:
                quiet += 0.5
                if idle is not None and quiet >= idle:
                    return
                continue
            if not _mine(event, client_id):
                continue
            quiet = 0.0
            sent += 1
            yield (
                f"id: {event.id}\nevent: {event.type}\ndata: {event.model_dump_json()}\n\n"
            ).encode()
    finally:
        await tail.close()
