"""Starting trades: the one path for the REST API (and later the command consumer).

Checked before anything is written: the client, their registered bank account, the
asset (one the providers quote against the platform's currency), exactly one amount
(a quantity of the asset, or for a buy a budget in the currency, fee included), and
for a sale the available balance. Then the operation is recorded under its
idempotency key and the saga started with that id.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from sagas import accounts
from sagas.errors import (
    BankAccountUnknown,
    IdempotencyKeyMissing,
    InsufficientFunds,
    InvalidAmount,
    NotFound,
    RequestInvalid,
    UnknownAsset,
)
from sagas.ledger import EUR
from sagas.operations import OperationRecord, request_hash
from sagas.trade import TradeInput
from sagas.trade.activities import event
from sagas.trade.workflows import TradeWorkflow
from services.app.withdrawals import KEY_PATTERN, parse_amount
from services.platform import ASSETS, Platform

TRADABLE = ("BTC", "ETH")  # what the providers quote against the platform's currency


class TradeBody(BaseModel):
    """A buy or a sale. Amounts are decimal strings (never JSON numbers): `quantity` in
    the asset's unit, or for a buy `spend` in the currency, the platform's fee included."""

    model_config = ConfigDict(extra="forbid", strict=True)

    side: Literal["buy", "sell"]
    asset: str = Field(min_length=1, max_length=12, examples=["BTC"])
    quantity: str | None = Field(default=None, min_length=1, max_length=100, examples=["0.01"])
    spend: str | None = Field(default=None, min_length=1, max_length=100, examples=["250.00"])
    auto_accept: bool = Field(
        default=False, description="execute the best quote at once, without an accept call"
    )
    counterparty: str | None = Field(
        default=None,
        max_length=40,
        examples=["lp-alpha"],
        description="ask this liquidity provider only (default: the best quote of all)",
    )

    @field_validator("quantity", "spend", "counterparty", mode="before")
    @classmethod
    def _absent_not_null(cls, value: object) -> object:
        # Leave a field out rather than send null: the document says a string.
        if value is None:
            raise ValueError("leave the field out instead of sending null")
        return value


def operation_id(client_id: str, key: str) -> str:
    if not KEY_PATTERN.fullmatch(key):
        raise IdempotencyKeyMissing(f"{key!r}")
    return f"tr:{client_id}:{key}"


class Trades:
    def __init__(self, platform: Platform, temporal: Client) -> None:
        self._p = platform
        self._temporal = temporal

    def validate(self, client_id: str, body: TradeBody) -> tuple[int | None, int | None, str]:
        """(quantity, budget, client IBAN), or the first thing wrong."""
        if self._p.operations.client(client_id) is None:
            raise NotFound(f"client {client_id}")
        if body.asset not in TRADABLE:
            raise UnknownAsset(f"{body.asset}; tradable: {', '.join(TRADABLE)}")
        if (body.quantity is None) == (body.spend is None):
            raise RequestInvalid("give exactly one of quantity and spend")
        if body.side == "sell" and body.spend is not None:
            raise RequestInvalid("a sale is for a quantity of the asset")
        known = self._p.settings.counterparties()
        if body.counterparty is not None and body.counterparty not in known:
            raise RequestInvalid(f"counterparty {body.counterparty}; known: {', '.join(known)}")
        # From the verified governance chain: a changed clients.iban counts for nothing.
        bank_account = self._p.governance.state().bank_account(client_id)
        if bank_account is None:
            raise BankAccountUnknown(f"client {client_id} has no bank account registered")
        asset = ASSETS[body.asset][0]
        quantity = budget = None
        if body.quantity is not None:
            quantity = parse_amount(body.quantity, asset.code, asset.decimals, "the quantity")
            if quantity <= 0:
                raise InvalidAmount("the quantity must be more than zero")
        if body.spend is not None:
            budget = parse_amount(body.spend, EUR.code, EUR.decimals, "the amount to spend")
            if budget <= 0:
                raise InvalidAmount("the amount to spend must be more than zero")
        if body.side == "sell":
            assert quantity is not None
            balance = self._p.ledger.balance(accounts.client(client_id, asset.code))
            if balance.available < quantity:
                raise InsufficientFunds(f"available {balance.available}, asked {quantity}")
        return quantity, budget, bank_account.iban

    async def create(
        self, client_id: str, key: str, body: TradeBody, requested_by: str
    ) -> tuple[OperationRecord, bool]:
        op_id = operation_id(client_id, key)
        # Everything up to the saga's start is one hop to the thread pool: under a burst
        # each hop waits for the event loop and the interpreter lock again.
        recorded = await asyncio.to_thread(self._record, client_id, op_id, body, requested_by)
        if isinstance(recorded, OperationRecord):
            return recorded, False  # a retry: its saga is under way
        stored, created, req = recorded
        # Started on every call until it moved: after a crash between recording and
        # starting, the retry starts it; Temporal refuses a second one.
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await self._temporal.start_workflow(
                TradeWorkflow.run,
                req,
                id=op_id,
                task_queue=self._p.settings.saga_task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        # No waiting for the quote: the caller gets the state so far and polls.
        if created:
            return stored, True
        current = await asyncio.to_thread(self._p.operations.get, op_id)
        return current or stored, False

    def _record(
        self, client_id: str, op_id: str, body: TradeBody, requested_by: str
    ) -> OperationRecord | tuple[OperationRecord, bool, TradeInput]:
        """The recorded trade if a retry finds its saga under way; else the checks and
        the record: (stored, created, the saga's input)."""
        digest = request_hash({"client": client_id, **body.model_dump(mode="json")})
        existing = self._p.operations.get(op_id)
        if (
            existing is not None
            and existing.request_hash == digest
            and existing.state != "requested"
        ):
            return existing
        quantity, budget, iban = self.validate(client_id, body)
        s = self._p.settings
        now = datetime.now(UTC)
        req = TradeInput(
            operation_id=op_id,
            client_id=client_id,
            side=body.side,
            asset=body.asset,
            decimals=ASSETS[body.asset][0].decimals,
            currency=s.trade_currency,
            quantity=quantity,
            budget=budget,
            client_iban=iban,
            platform_iban=s.bank_platform_iban,
            counterparties=[body.counterparty] if body.counterparty else s.counterparties(),
            fee_bps=s.trade_fee_bps,
            auto_accept=body.auto_accept,
            accept_seconds=s.trade_accept_seconds,
            hold_ttl_seconds=s.trade_hold_ttl_seconds,
            requested_by=requested_by,
            requested_at=now,
        )
        record = OperationRecord(
            id=op_id,
            kind="trade",
            client_id=client_id,
            asset=body.asset,
            chain=ASSETS[body.asset][1],
            amount=quantity or 0,
            request_hash=digest,
            requested_by=requested_by,
            state="requested",
            created_at=now,
            updated_at=now,
        )
        requested = event(
            req,
            "requested",
            requested_by=requested_by,
            quantity=None if quantity is None else str(quantity),
            budget=None if budget is None else str(budget),
        )
        stored, created = self._p.operations.create(record, [requested], requested[1].data)
        return stored, created, req

    def handle(self, op_id: str) -> WorkflowHandle[TradeWorkflow, object]:
        return self._temporal.get_workflow_handle_for(TradeWorkflow.run, op_id)
