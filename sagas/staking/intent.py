"""The intents of a stake and an unstake: what operators approve and the signer checks.

A stake's destination is the validator delegated to; an unstake names its stake (the
payload's `stake`) and has the stake's asset and validator. Both carry the client's
signed request (`POST /v1/clients/{id}/stakes`, `POST /v1/stakes/{id}/unstake`), which
the signer verifies (sagas.signing.authority).
"""

from __future__ import annotations

from datetime import datetime

from sagas.intents import Intent, SignedRequest


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
    """The unstake's intent: undelegate `amount` of `stake` from its validator."""
    if stake.kind != "stake" or stake.client_id is None:
        raise ValueError("an unstake undoes a client's stake")
    return Intent(
        kind="unstake",
        operation_id=operation_id,
        client_id=stake.client_id,
        asset=stake.asset,
        amount=amount,
        destination=stake.destination,
        fee_cap=fee_cap,
        policy_version=policy_version,
        expires_at=expires_at.replace(microsecond=0),
        payload={
            "requested_by": requested_by,
            "chain": "cosmos",
            "stake": stake.operation_id,
            **({"request": request.model_dump(mode="json")} if request else {}),
        },
    )
