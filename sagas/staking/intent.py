"""The intents of a stake, an unstake and a redelegation: what operators approve and the
signer checks.

A stake's destination is the validator delegated to; an unstake names its position (the
payload's `stake`: a stake or a redelegation) and has the position's asset and
validator; a redelegation names its position and the validator it moves to (its
destination), with the position's asset (decision 0033). Each carries the client's
signed request (`POST /v1/clients/{id}/stakes`, `POST /v1/stakes/{id}/unstake`,
`POST /v1/stakes/{id}/redelegate`), which the signer verifies (sagas.signing.authority).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sagas.intents import Intent, SignedRequest

# The intents a position is made by: a stake, or a redelegation of (part of) one.
POSITION_KINDS = frozenset({"stake", "redelegate"})


def position_kind(position_id: str) -> Literal["stake", "redelegate"]:
    """The intent kind a position's id was made by: `red:...` a redelegation, else a
    stake (`stk:...`)."""
    return "redelegate" if position_id.startswith("red:") else "stake"


def stake_intent(
    operation_id: str,
    client_id: str,
    asset: str,
    amount: int,
    validator: str,
    fee_cap: int,
    policy_version: int,
    expires_at: datetime,
    requested_by: str,
    request: SignedRequest | None,
) -> Intent:
    """The stake's intent: delegate `amount` (minor units) of `asset` to `validator`."""
    return Intent(
        kind="stake",
        operation_id=operation_id,
        client_id=client_id,
        asset=asset,
        amount=amount,
        destination=validator,
        fee_cap=fee_cap,
        policy_version=policy_version,
        expires_at=expires_at.replace(microsecond=0),
        payload={
            "requested_by": requested_by,
            "chain": "cosmos",
            **({"request": request.model_dump(mode="json")} if request else {}),
        },
    )


def unstake_intent(
    operation_id: str,
    stake: Intent,
    amount: int,
    fee_cap: int,
    policy_version: int,
    expires_at: datetime,
    requested_by: str,
    request: SignedRequest | None,
) -> Intent:
    """The unstake's intent: undelegate `amount` of the position `stake` (a stake or a
    redelegation) from its validator."""
    if stake.kind not in POSITION_KINDS or stake.client_id is None:
        raise ValueError("an unstake undoes a client's position")
    return _on_position(
        "unstake", operation_id, stake, amount, stake.destination,
        fee_cap, policy_version, expires_at, requested_by, request,
    )  # fmt: skip


def redelegate_intent(
    operation_id: str,
    position: Intent,
    amount: int,
    validator: str,
    fee_cap: int,
    policy_version: int,
    expires_at: datetime,
    requested_by: str,
    request: SignedRequest | None,
) -> Intent:
    """The redelegation's intent: move `amount` of `position` (a stake or a redelegation)
    from its validator to `validator`."""
    if position.kind not in POSITION_KINDS or position.client_id is None:
        raise ValueError("a redelegation moves a client's position")
    return _on_position(
        "redelegate", operation_id, position, amount, validator,
        fee_cap, policy_version, expires_at, requested_by, request,
    )  # fmt: skip


def _on_position(
    kind: Literal["unstake", "redelegate"],
    operation_id: str,
    position: Intent,
    amount: int,
    destination: str,
    fee_cap: int,
    policy_version: int,
    expires_at: datetime,
    requested_by: str,
    request: SignedRequest | None,
) -> Intent:
    """An intent that acts on `position`: its client and asset, its id as `stake`."""
    return Intent(
        kind=kind,
        operation_id=operation_id,
        client_id=position.client_id,
        asset=position.asset,
        amount=amount,
        destination=destination,
        fee_cap=fee_cap,
        policy_version=policy_version,
        expires_at=expires_at.replace(microsecond=0),
        payload={
            "requested_by": requested_by,
            "chain": "cosmos",
            "stake": position.operation_id,
            **({"request": request.model_dump(mode="json")} if request else {}),
        },
    )
