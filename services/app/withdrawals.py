"""Starting withdrawals: the one path for the REST API and the Kafka command consumer.

Everything that can be checked before anything is written is checked here: the
asset, the amount (a decimal string, no more decimals than the asset has), the
destination for the asset's network, that it neither burns the money nor is one of
the platform's own addresses, the minimum withdrawal (services/app/destinations.py),
and the balance. Then the operation is
recorded under its idempotency key and the saga started with that id, so a repeated
request returns the same saga and a different body under the same key is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from sagas import accounts
from sagas.errors import (
    DependencyUnavailable,
    IdempotencyConflict,
    IdempotencyKeyMissing,
    InsufficientFunds,
    InvalidAmount,
    NotFound,
    RequestSignatureInvalid,
    TooManyDecimals,
    UnknownAsset,
)
from sagas.intents import Refusal, SignedRequest, check_request_signature
from sagas.money import parse_units
from sagas.operations import OperationRecord, recorded_step, request_hash
from sagas.withdrawal import WithdrawalInput
from sagas.withdrawal.activities import client_pays_fee, event
from sagas.withdrawal.workflows import WithdrawalWorkflow
from services.app.addresses import check_bitcoin, check_cosmos, check_ethereum
from services.app.cosmos_fees import cosmos_fee
from services.app.destinations import refuse_amount, refuse_destination
from services.platform import ASSETS, Platform

MAX_SKEW = timedelta(minutes=5)  # a signed request's timestamp, either side of now
KEY_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")  # used with fullmatch: "$" passes "k\n"


class WithdrawalBody(BaseModel):
    """A withdrawal request. The amount is a decimal string in the asset's unit (never a
    JSON number: no floats near money)."""

    model_config = ConfigDict(extra="forbid")

    asset: str = Field(min_length=1, max_length=12, examples=["ETH"])
    amount: str = Field(min_length=1, max_length=100, examples=["0.25"])
    destination: str = Field(
        min_length=1, max_length=128, examples=["0x52908400098527886E0F7030069857D2E4169EE7"]
    )
    requested_by: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        # The operators' own name form (sagas.governance): "Bob" is refused, not taken as
        # someone other than operator bob.
        pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$",
        description="the bank's user who asked, in the operators' name form (lower case), "
        "as the client system attests by signing the body: never counted among the "
        "withdrawal's approvers (nor is the caller)",
    )


def parse_amount(text: str, code: str, decimals: int, what: str = "the amount") -> int:
    """A decimal string in the asset's unit -> minor units, or the API's code for what is
    wrong with it (CUS-3004 too many decimals, CUS-1008 anything else). Zero is allowed
    here; callers that need more than zero say so."""
    try:
        return parse_units(text, decimals)
    except ValueError as exc:
        if "more than" in str(exc):
            raise TooManyDecimals(f"{what} {text}: {code} has {decimals}") from None
        raise InvalidAmount(f"{what} {text!r} is not a positive decimal amount") from None


def operation_id(client_id: str, key: str) -> str:
    if not KEY_PATTERN.fullmatch(key):
        raise IdempotencyKeyMissing(f"{key!r}")
    return f"wd:{client_id}:{key}"


# What can be withdrawn on chain: every asset. ATOM leaves from the client's own address,
# which pays the network fee from the client's balance (decision 0035).
WITHDRAWABLE = tuple(ASSETS)


class Withdrawals:
    def __init__(self, platform: Platform, temporal: Client) -> None:
        self._p = platform
        self._temporal = temporal

    def validate(self, client_id: str, body: WithdrawalBody) -> tuple[str, int, str]:
        """(asset, amount in minor units, destination), or the first thing wrong."""
        if self._p.operations.client(client_id) is None:
            raise NotFound(f"client {client_id}")
        if body.asset not in WITHDRAWABLE:
            raise UnknownAsset(f"{body.asset}; withdrawable: {', '.join(sorted(WITHDRAWABLE))}")
        asset, chain = ASSETS[body.asset]
        amount = parse_amount(body.amount, asset.code, asset.decimals)
        if amount <= 0:
            raise InvalidAmount("the amount must be more than zero")
        s = self._p.settings
        if chain == "ethereum":
            destination = check_ethereum(body.destination)
        elif chain == "cosmos":
            destination = check_cosmos(body.destination, s.cosmos_address_prefix)
        else:
            destination = check_bitcoin(body.destination, s.btc_network)
        tokens = self._p.tokens.values()
        refuse_destination(self._p.keys.lookup, tokens, client_id, chain, destination)
        minimum = s.min_withdrawal(asset.code)
        refuse_amount(asset, amount, minimum, chain, destination, s.btc_network)
        balance = self._p.ledger.balance(accounts.client(client_id, asset.code))
        fee = self.network_fee(chain)
        if balance.available < amount + fee:
            and_fee = f" and the network fee {fee}" if fee else ""
            raise InsufficientFunds(
                f"available {balance.available}, asked {amount}{and_fee} minor units"
            )
        return asset.code, amount, destination

    def network_fee(self, chain: str) -> int:
        """The fee the client's own address pays, reserved with the amount (ATOM); 0 where
        the platform's wallet pays its own."""
        return cosmos_fee(self._p.settings) if client_pays_fee(chain) else 0

    def source(self, client_id: str, asset: str) -> str | None:
        """The client's own address an ATOM payment leaves from (its deposit address)."""
        if not client_pays_fee(ASSETS[asset][1]):
            return None
        try:
            return self._p.client_address(client_id, asset).address
        except KeyError:
            raise DependencyUnavailable("the platform wallet has no Cosmos keys") from None

    def check_signed(self, client_id: str, body: WithdrawalBody, request: SignedRequest) -> None:
        """The client's request signature: by a key governance registered to this client,
        over exactly this path and body, fresh (RequestSignatureInvalid otherwise). The
        nonce is claimed later, once the request is valid, so a refused request can be
        sent again as it was."""
        checked = check_request_signature(
            request.method,
            request.target,
            request.body_bytes(),
            request.signature,
            self._p.verified.client_keys(),
        )
        if not checked.ok:
            assert checked.refusal is not None
            raise RequestSignatureInvalid(checked.refusal.value)
        if checked.client_id != client_id:
            raise RequestSignatureInvalid("signed by a key of another client")
        if (request.method, request.target) != ("POST", f"/v1/clients/{client_id}/withdrawals"):
            raise RequestSignatureInvalid("the signature is for another request")
        if abs(request.signature.timestamp - datetime.now(UTC)) > MAX_SKEW:
            raise RequestSignatureInvalid(Refusal.CLOCK_SKEW.value)
        try:
            signed = WithdrawalBody.model_validate_json(request.body_bytes())
        except ValueError:
            raise RequestSignatureInvalid("the signed body is not a withdrawal") from None
        if signed != body:
            raise RequestSignatureInvalid("the body is not the one signed")

    def claim(self, request: SignedRequest) -> None:
        sig = request.signature
        if not self._p.nonces.claim(sig.key_id, sig.nonce, sig.timestamp + MAX_SKEW):
            raise RequestSignatureInvalid(Refusal.REPLAYED_NONCE.value)

    async def create(
        self,
        client_id: str,
        key: str,
        body: WithdrawalBody,
        requested_by: str,
        request: SignedRequest | None,
    ) -> tuple[OperationRecord, bool]:
        """The withdrawal for (client, key): recorded and its saga started, or the one
        there is. IdempotencyConflict if the key was used with another body. A new
        withdrawal needs its client's signed request (RequestSignatureInvalid); a retry
        of a recorded one is answered as it is."""
        op_id = operation_id(client_id, key)
        # Everything up to the saga's start is one hop to the thread pool: under a burst
        # each hop waits for the event loop and the interpreter lock again.
        stored, created, req, request = await asyncio.to_thread(
            self._record, client_id, key, op_id, body, requested_by, request
        )
        s = self._p.settings
        start = req.model_copy(
            update={
                "requested_at": stored.created_at,
                "requested_by": stored.requested_by,
                "approval_ttl_seconds": s.approval_ttl_seconds,
                "poll_seconds": s.chain_poll_seconds,
                "stuck_after_seconds": s.stuck_after_seconds,
                "request": request,
            }
        )
        if not created and stored.state != "requested":
            # Its saga ran its first step: never start another. Once Temporal's retention
            # has dropped a finished run, REJECT_DUPLICATE would not refuse a second one.
            return await asyncio.to_thread(self.current, stored), False
        # Started on every call until it moved: after a crash between recording and
        # starting, the retry starts it; if it runs already, Temporal refuses a second one.
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await self._temporal.start_workflow(
                WithdrawalWorkflow.run,
                start,
                id=op_id,
                task_queue=s.saga_task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        # No waiting for the saga's first step: the caller gets the state so far and polls
        # (a retry: as far as its saga got).
        if created:
            return stored, True
        return await asyncio.to_thread(self.current, stored), False

    def _record(
        self,
        client_id: str,
        key: str,
        op_id: str,
        body: WithdrawalBody,
        requested_by: str,
        request: SignedRequest | None,
    ) -> tuple[OperationRecord, bool, WithdrawalInput, SignedRequest | None]:
        """The checks and the record (the operation and its first step, with the signed
        request): (stored, created, the saga's input, the request to start it with)."""
        existing = self._p.operations.get(op_id)
        digest = request_hash(
            {
                "client": client_id,
                "asset": body.asset,
                "amount": body.amount,
                "destination": body.destination,
            }
        )
        if existing is not None and existing.request_hash != digest:
            # Another body under a used key: 409, before any check of the body could
            # answer 422 for a request that is not the one the key names.
            raise IdempotencyConflict(f"{key} was used for another withdrawal")
        if existing is None:
            if request is None:
                raise RequestSignatureInvalid("a withdrawal is signed by its client's key")
            try:
                self.check_signed(client_id, body, request)
                asset, amount, destination = self.validate(client_id, body)
                self.source(client_id, asset)  # before the nonce is spent: it can fail
                self.claim(request)
            except RequestSignatureInvalid as refused:
                if "replayed" not in str(refused):
                    raise
                # The same request twice at once: the one that claimed it records it.
                existing = self._p.operations.get(op_id)
                if existing is None or existing.request_hash != digest:
                    raise
                asset, amount = existing.asset, existing.amount
                destination = existing.destination or ""
        else:  # a retry: answer as the first time, whatever the balance is now
            asset, amount, destination = existing.asset, existing.amount, existing.destination or ""
        chain = ASSETS[asset][1]
        now = datetime.now(UTC)
        # From the client's own address with its fee (ATOM): fixed when first recorded.
        source, fee = self.source(client_id, asset), self.network_fee(chain)
        req = WithdrawalInput(
            operation_id=op_id,
            client_id=client_id,
            asset=asset,
            chain=chain,
            amount=amount,
            destination=destination,
            requested_by=requested_by,
            requested_at=now,
            source=source,
            network_fee=fee,
        )
        record = OperationRecord(
            id=op_id,
            kind="withdrawal",
            client_id=client_id,
            asset=asset,
            chain=chain,
            amount=amount,
            destination=destination,
            request_hash=digest,
            requested_by=requested_by,
            state="requested",
            created_at=now,
            updated_at=now,
        )
        # The signed request is kept with the first step: a retry after a crash between
        # recording and starting the saga starts it with the same request.
        detail: dict[str, Any] = {}
        if request is not None:
            detail["request"] = request.model_dump(mode="json")
        if source is not None:
            detail.update(source=source, network_fee=fee)
        stored, created = self._p.operations.create(
            record, [event(req, "requested", requested_by=requested_by)], detail or None
        )
        if not created:
            request = self.recorded_request(op_id)
            recorded = recorded_step(self._p.operations.timeline(op_id), "requested") or {}
            if recorded.get("source"):
                req = req.model_copy(
                    update={
                        "source": str(recorded["source"]),
                        "network_fee": int(recorded["network_fee"]),
                    }
                )
        return stored, created, req, request

    def recorded_request(self, op_id: str) -> SignedRequest | None:
        detail = recorded_step(self._p.operations.timeline(op_id), "requested") or {}
        value = detail.get("request")
        return None if value is None else SignedRequest.model_validate(value, strict=False)

    def current(self, stored: OperationRecord) -> OperationRecord:
        """The operation as it is now."""
        return self._p.operations.get(stored.id) or stored

    def handle(self, op_id: str) -> WorkflowHandle[WithdrawalWorkflow, object]:
        return self._temporal.get_workflow_handle_for(WithdrawalWorkflow.run, op_id)
