"""The intent of a withdrawal: what operators sign and what the signer pays, no more.

Built once by the saga after the policy decision, stored beside the operation, and
shown to operators (`GET /v1/withdrawals/{id}/intent`). Approvals are signatures over
its hash; the signer reads the intent and the approvals from any table, because it
trusts the signatures, not the table (docs/security.md).
"""

from __future__ import annotations

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


def requester(intent: Intent) -> str | None:
    """Who asked for the movement (never counted as an approver)."""
    value = (intent.payload or {}).get("requested_by")
    return value if isinstance(value, str) else None
