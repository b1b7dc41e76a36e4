"""Trading routes of the REST API: clients' bank accounts, buys and sells against fiat
with a quote to accept, and each trade's timeline."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError

from sagas import accounts
from sagas.banking import bic_valid, iban_valid
from sagas.errors import (
    DependencyUnavailable,
    IbanInvalid,
    InvalidState,
    NotFound,
    QuoteExpired,
    UnknownAccount,
)
from sagas.governance import Proposal
from sagas.ledger import EUR
from sagas.money import format_units
from sagas.operations import OperationRecord, Step
from sagas.steps import detail_of
from sagas.trade import Acceptance, TradeView
from services.api.auth import Principal
from services.api.deps import Key, Who
from services.api.openapi import LOCATION, integral, poll_at, started
from services.app.settlements import start_settlement
from services.app.trades import TRADABLE, TradeBody, Trades
from services.platform import ASSETS, Platform

Remember = Callable[
    [Principal, Request, str, BaseModel, Callable[[], Awaitable[tuple[int, BaseModel]]]],
    Awaitable[JSONResponse],
]


class BankAccountBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    iban: str = Field(min_length=15, max_length=34, examples=["DE89370400440532013000"])
    bic: str = Field(min_length=8, max_length=11, examples=["SIMUDEFFXXX"])


class BankAccountView(BaseModel):
    iban: str
    bic: str
    currency: str = Field(examples=["EUR"])
    booked: str = Field(examples=["1250.00"])
    available: str = Field(examples=["1000.00"], description="booked less holds")
    held: str = Field(examples=["250.00"])
    available_minor: str = Field(examples=["100000"])


class AcceptBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TradeOut(BaseModel):
    operation_id: str = Field(examples=["tr:acme-treasury:order-0001"])
    client_id: str
    side: str = Field(examples=["buy"])
    asset: str = Field(examples=["BTC"])
    state: str = Field(examples=["quoted"])
    quantity: str | None = Field(default=None, examples=["0.01"])
    quantity_minor: str | None = Field(default=None, examples=["1000000"])
    currency: str = Field(examples=["EUR"])
    price: str | None = Field(default=None, examples=["60120.00"], description="per unit")
    counterparty: str | None = None
    provider_amount: str | None = Field(default=None, examples=["601.20"])
    fee: str | None = Field(default=None, examples=["3.01"])
    client_amount: str | None = Field(
        default=None, examples=["604.21"], description="buy: what the client pays; sell: gets"
    )
    client_amount_minor: str | None = Field(default=None, examples=["60421"])
    quote_expires_at: str | None = None
    trade_id: str | None = None
    error_code: str | None = None
    requested_by: str
    created_at: str
    updated_at: str
    timeline: list[Step] = Field(default_factory=list)


class LegView(BaseModel):
    asset: str
    amount_minor: str
    payer: str = Field(examples=["provider"])
    to: str = Field(description="an address or an IBAN")


class InstructionView(BaseModel):
    counterparty: str
    trades: int
    end_to_end_id: str
    legs: list[LegView]


_INT = BeforeValidator(integral)  # again: the bounds' Field must sit inside it


class SettlementBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    leg_timeout_seconds: Annotated[int, Field(ge=5, le=7 * 86400), _INT] | None = Field(
        default=None,
        description="how long the counterparties have to deliver (default: the platform's)",
    )


class SettlementView(BaseModel):
    settlement_id: str = Field(examples=["st:2026-11-27-eod"])
    state: str = Field(examples=["settled"])
    requested_by: str
    instructions: list[InstructionView]
    breaks: list[dict[str, Any]] | None = Field(
        default=None, description="after reconciliation; empty when clean"
    )
    timeline: list[Step]


class PositionView(BaseModel):
    counterparty: str
    asset: str
    ledger_minor: str = Field(description="the settlement account's balance (debit: owed to us)")
    unsettled_trades: int
    unsettled_quantity_minor: str = Field(description="net the provider owes us (bought)")
    unsettled_fiat_minor: str = Field(description="net we owe the provider (cents)")


def trading_routes(platform: Platform, state: dict[str, Any], remembered: Remember) -> APIRouter:
    router = APIRouter()

    def cents(value: Any) -> str | None:
        return None if value is None else format_units(int(value), EUR.decimals)

    def trade_view(op: OperationRecord, timeline: bool = True) -> TradeOut:
        steps = platform.operations.timeline(op.id)
        # The last round's quote (auto-accepted trades re-quote when stale: quoted:2).
        by_step: dict[str, dict[str, Any]] = {s.step.split(":")[0]: dict(s.detail) for s in steps}
        quoted = by_step.get("quoted", {})
        quote: dict[str, Any] = quoted.get("quote") or {}
        executed = by_step.get("executed", {})
        decimals = ASSETS[op.asset][0].decimals
        quantity = quote.get("quantity")
        side = str(by_step.get("requested", {}).get("side", ""))
        return TradeOut(
            operation_id=op.id,
            client_id=op.client_id or "",
            side=side,
            asset=op.asset,
            state=op.state,
            quantity=None if quantity is None else format_units(int(quantity), decimals),
            quantity_minor=None if quantity is None else str(quantity),
            currency=platform.settings.trade_currency,
            price=cents(quote.get("price")),
            counterparty=quote.get("counterparty"),
            provider_amount=cents(quote.get("notional")),
            fee=cents(quoted.get("fee")),
            client_amount=cents(quoted.get("client_fiat")),
            client_amount_minor=None
            if quoted.get("client_fiat") is None
            else str(quoted["client_fiat"]),
            quote_expires_at=quote.get("expires_at"),
            trade_id=executed.get("trade_id"),
            error_code=op.error_code,
            requested_by=op.requested_by,
            created_at=op.created_at.isoformat(),
            updated_at=op.updated_at.isoformat(),
            timeline=steps if timeline else [],
        )

    def own_trade(who: Principal, operation_id: str) -> OperationRecord:
        op = platform.operations.get(operation_id)
        if op is None or op.kind != "trade" or op.client_id is None:
            raise NotFound(f"trade {operation_id}")
        if who.role == "client" and who.client_id != op.client_id:
            raise NotFound(f"trade {operation_id}")
        return op

    def known_client(client_id: str) -> None:
        if platform.operations.client(client_id) is None:
            raise NotFound(f"client {client_id}")

    def bank_view(iban: str, bic: str) -> BankAccountView:
        bal = platform.bank.balance(iban)
        return BankAccountView(
            iban=iban,
            bic=bic,
            currency=bal.currency,
            booked=format_units(bal.booked, EUR.decimals),
            available=format_units(bal.available, EUR.decimals),
            held=format_units(bal.held, EUR.decimals),
            available_minor=str(bal.available),
        )

    @router.put(
        "/v1/clients/{client_id}/bank-account",
        tags=["trading"],
        status_code=202,
        responses={
            202: {
                "model": Proposal,
                "description": "proposed (bank_account_change): trades use the account once "
                "a quorum of operators has approved it; poll Location",
                "headers": LOCATION,
            },
            200: {"model": BankAccountView, "description": "unchanged: the current account"},
        },
    )
    def put_bank_account(client_id: str, body: BankAccountBody, who: Who) -> Proposal:
        """Propose the client's account at the bank (operators): trades hold and pay
        there once a quorum of operators has approved the governance proposal. The bank
        must know the account. 200 if it is the current one."""
        who.must_be("operator")
        known_client(client_id)
        if not iban_valid(body.iban):
            raise IbanInvalid(f"{body.iban}: wrong shape or check digits")
        if not bic_valid(body.bic):
            raise IbanInvalid(f"BIC {body.bic}")
        view = bank_view(body.iban, body.bic)  # BankAccountUnknown if the bank has none
        current = platform.governance.state().bank_account(client_id)
        if current is not None and (current.iban, current.bic) == (body.iban, body.bic):
            return JSONResponse(view.model_dump(mode="json"))  # type: ignore[return-value]
        proposal = platform.governance.propose(
            "bank_account_change",
            {"iban": body.iban, "bic": body.bic},
            who.sub,
            client_id,
            ttl=timedelta(seconds=platform.settings.governance_proposal_ttl_seconds),
        )
        return JSONResponse(  # type: ignore[return-value]
            proposal.model_dump(mode="json"),
            status_code=202,
            headers={"Location": f"/v1/governance/proposals/{proposal.id}"},
        )

    @router.get("/v1/clients/{client_id}/bank-account", tags=["trading"])
    def get_bank_account(client_id: str, who: Who) -> BankAccountView:
        """The client's bank account (as governance approved it) with its balance as the
        bank reports it now."""
        who.may_see(client_id)
        known_client(client_id)
        found = platform.governance.state().bank_account(client_id)
        if found is None:
            raise NotFound(f"client {client_id} has no bank account registered")
        return bank_view(found.iban, found.bic)

    @router.post(
        "/v1/clients/{client_id}/trades",
        status_code=202,
        tags=["trading"],
        responses=started(TradeOut, "the trade"),
    )
    async def create_trade(
        client_id: str, body: TradeBody, who: Who, key: Key, response: Response
    ) -> TradeOut:
        """Start a trade saga; the Idempotency-Key names it. 202 at once with its state so
        far (`requested`); poll Location until it is `quoted` (or refused), then accept
        the quote before `quote_expires_at`, unless auto_accept. A replay is 200."""
        who.may_see(client_id)
        who.must_be("client", "operator")
        op, created = await state["trades"].create(client_id, key, body, who.sub)
        poll_at(response, f"/v1/trades/{op.id}", created)
        return await asyncio.to_thread(trade_view, op)

    @router.get("/v1/clients/{client_id}/trades", tags=["trading"])
    def list_trades(client_id: str, who: Who) -> list[TradeOut]:
        who.may_see(client_id)
        known_client(client_id)
        return [trade_view(op, False) for op in platform.operations.for_client(client_id, "trade")]

    @router.get("/v1/trades/{operation_id}", tags=["trading"])
    def get_trade(operation_id: str, who: Who) -> TradeOut:
        """The trade with its quote, fee and timeline of steps."""
        return trade_view(own_trade(who, operation_id))

    @router.post("/v1/trades/{operation_id}/accept", tags=["trading"])
    async def accept(operation_id: str, request: Request, who: Who, key: Key) -> TradeOut:
        """Accept the quote (the client, or an operator for them) before it expires:
        CUS-5101 after, CUS-3009 if the trade is not waiting for acceptance."""
        who.must_be("client", "operator")
        await asyncio.to_thread(own_trade, who, operation_id)

        async def compute() -> tuple[int, BaseModel]:
            trades: Trades = state["trades"]
            if (await asyncio.to_thread(own_trade, who, operation_id)).state == "requested":
                # No quote yet: answered at once, not after the saga's wait for one.
                raise InvalidState("the trade has no quote yet: poll it until it is quoted")
            try:
                await trades.handle(operation_id).execute_update(
                    "accept",
                    Acceptance(accepted_by=who.sub),
                    # One update per caller and key: a retry after a lost answer gets the
                    # first one's outcome, not "not awaiting acceptance".
                    id=f"accept:{who.sub}:{key}",
                    result_type=TradeView,
                )
            except WorkflowUpdateFailedError as exc:
                # The saga's refusal: its type names the error, its details carry the
                # detail (sagas/steps.py `crossing`).
                if getattr(exc.cause, "type", None) == QuoteExpired.__name__:
                    raise QuoteExpired(detail_of(exc)) from None
                raise InvalidState(detail_of(exc)) from None
            except WorkflowUpdateRPCTimeoutOrCancelledError:
                raise DependencyUnavailable(
                    "the acceptance was sent but not confirmed in time: GET the trade to see "
                    "whether it was taken"
                ) from None
            except RPCError as exc:
                raise InvalidState(f"the trade does not take acceptance now: {exc}") from None
            op = await asyncio.to_thread(own_trade, who, operation_id)
            return 200, await asyncio.to_thread(trade_view, op)

        return await remembered(who, request, key, AcceptBody(), compute)  # type: ignore[return-value]

    # --- settlement ---------------------------------------------------------------------
    def settlement_view(sid: str) -> SettlementView:
        op = platform.operations.get(sid)
        if op is None or op.kind != "settlement":
            raise NotFound(f"settlement {sid}")
        steps = platform.operations.timeline(sid)
        planned: dict[str, Any] = next((dict(x.detail) for x in steps if x.step == "planned"), {})
        reconciled: dict[str, Any] | None = next(
            (dict(x.detail) for x in steps if x.step == "reconciled"), None
        )
        return SettlementView(
            settlement_id=sid,
            state=op.state,
            requested_by=op.requested_by,
            instructions=[
                InstructionView(
                    counterparty=str(part["counterparty"]),
                    trades=len(part["trades"]),
                    end_to_end_id=str(part["end_to_end_id"]),
                    legs=[
                        LegView(
                            asset=str(leg["asset"]),
                            amount_minor=str(leg["amount"]),
                            payer=str(leg["payer"]),
                            to=str(leg["to"]),
                        )
                        for leg in part["legs"]
                    ],
                )
                for part in planned.get("parts", [])
            ],
            breaks=None if reconciled is None else list(reconciled.get("breaks", [])),
            timeline=steps,
        )

    @router.post(
        "/v1/settlements",
        status_code=202,
        tags=["settlement"],
        responses=started(SettlementView, "the settlement"),
    )
    async def create_settlement(
        body: SettlementBody, who: Who, key: Key, response: Response
    ) -> SettlementView:
        """Settle now (operators): every unsettled trade, netted per counterparty and
        asset, delivery versus payment. The Idempotency-Key names the settlement. 202 at
        once with its state so far (`requested` until the saga has planned it); poll
        Location. A replay is 200."""
        who.must_be("operator")
        sid, created = await start_settlement(
            platform, state["temporal"], key, who.sub, body.leg_timeout_seconds
        )
        poll_at(response, f"/v1/settlements/{sid}", created)
        return await current_settlement(sid)

    async def current_settlement(sid: str) -> SettlementView:
        """The settlement as recorded, or `requested` while its saga has not planned it
        yet (it records the settlement then): polling never sees a 404 in between."""
        try:
            return await asyncio.to_thread(settlement_view, sid)
        except NotFound:
            if not sid.startswith("st:"):
                raise
        try:
            described = await state["temporal"].get_workflow_handle(sid).describe()
            requested_by = await described.memo_value("requested_by", "")
        except RPCError:
            raise NotFound(f"settlement {sid}") from None
        return SettlementView(
            settlement_id=sid,
            state="requested",
            requested_by=str(requested_by),
            instructions=[],
            timeline=[],
        )

    @router.get("/v1/settlements/{settlement_id}", tags=["settlement"])
    async def get_settlement(settlement_id: str, who: Who) -> SettlementView:
        """A settlement: its instructions per counterparty and asset, its timeline and
        its reconciliation breaks (an empty list: clean); `requested` until planned."""
        who.must_be("operator", "auditor")
        return await current_settlement(settlement_id)

    @router.get("/v1/liquidity/positions", tags=["settlement"])
    def positions(who: Who) -> list[PositionView]:
        """Per counterparty and asset: the settlement account in the ledger and the
        trades not settled yet (operators, auditors)."""
        who.must_be("operator", "auditor")
        out = []
        for cp in platform.settings.counterparties():
            unsettled = platform.trades.unsettled(cp)
            for code in TRADABLE:
                mine = [t for t in unsettled if t.asset == code]
                try:
                    balance = platform.ledger.balance(accounts.settlement(cp, code)).total
                except UnknownAccount:
                    balance = 0
                out.append(
                    PositionView(
                        counterparty=cp,
                        asset=code,
                        ledger_minor=str(balance),
                        unsettled_trades=len(mine),
                        unsettled_quantity_minor=str(
                            sum(t.quantity if t.side == "buy" else -t.quantity for t in mine)
                        ),
                        unsettled_fiat_minor=str(
                            sum(t.lp_notional if t.side == "buy" else -t.lp_notional for t in mine)
                        ),
                    )
                )
        return out

    return router
