"""The intent of a withdrawal: what operators sign and what the signer pays, no more.

Built once by the saga after the policy decision, stored beside the operation, and
shown to operators (`GET /v1/withdrawals/{id}/intent`). Approvals are signatures over
its hash; the signer reads the intent and the approvals from any table, because it
trusts the signatures, not the table (docs/security.md).
"""

from __future__ import annotations

import json
from datetime import timedelta

from sagas.intents import Intent, SignedRequest
from sagas.withdrawal import WithdrawalInput

# Time to sign after the approval window closes (the last approval may come at its end).
SIGNING_GRACE = timedelta(hours=1)


def withdrawal_intent(req: WithdrawalInput, policy_version: int, fee_cap: int) -> Intent:
    """The withdrawal's intent. `fee_cap` is in the minor unit of the chain's fee asset
    (wei for Ethereum and its tokens, satoshi for Bitcoin): the most the signer may let
    the network fee be. It expires when the approval window closes plus SIGNING_GRACE."""
    expires = req.requested_at + timedelta(seconds=req.approval_ttl_seconds) + SIGNING_GRACE
    return Intent(
        kind="withdrawal",
        operation_id=req.operation_id,
        client_id=req.client_id,
        asset=req.asset,
        amount=req.amount,
        destination=req.destination,
        fee_cap=fee_cap,
        policy_version=policy_version,
        expires_at=expires.replace(microsecond=0),
        payload={
            "requested_by": req.requested_by,
            "chain": req.chain,
            **({"request": req.request.model_dump(mode="json")} if req.request else {}),
        },
    )


def signed_request(intent: Intent) -> SignedRequest | None:
    """The client's signed request the intent carries (None: there is none)."""
    value = (intent.payload or {}).get("request")
    if not isinstance(value, dict):
        return None
    try:
        return SignedRequest.model_validate(value, strict=False)
    except ValueError:
        return None


def signed_requester(request: SignedRequest | None) -> str | None:
    """The `requested_by` the client system named in the body it signed, if any."""
    if request is None:
        return None
    try:
        body = json.loads(request.body_bytes())
    except ValueError:
        return None
    value = body.get("requested_by") if isinstance(body, dict) else None
    return value if isinstance(value, str) else None


def requester(intent: Intent) -> frozenset[str]:
    """Everyone who asked for the movement (never counted as an approver): the user the
    API or the command named (`requested_by`, not signed) and the bank's user the client
    system named in the body it signed (its `requested_by`, if given), so neither a
    relaying operator nor the client's own user approves it."""
    value = (intent.payload or {}).get("requested_by")
    names = {value} if isinstance(value, str) else set()
    signed = signed_requester(signed_request(intent))
    if signed is not None:
        names.add(signed)
    return frozenset(names)
