"""What the signer may pay for an operation, decided from signatures alone.

The signer reads an operation's intent and the approvals handed in from tables any
process could have written; none of that is trusted. It trusts the governance view
(verified from the genesis quorum), the signatures, and its own record of what it
signed. `authorise` is pure: the signer gathers the inputs and calls it before every
signature; the chain-specific checks then hold the transaction to the result.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError

from sagas.confirmations import SettlementConfirmation, verify_confirmation
from sagas.errors import KeyAccessDenied
from sagas.governance import SETTLEMENT_POLICY, Governance, effective_policy
from sagas.intents import Approval, Intent, check_request_signature, count_approvals
from sagas.money import parse_units
from sagas.settlement import leg_operation
from sagas.staking.intent import POSITION_KINDS
from sagas.withdrawal.intent import requester, signed_request

# What a client signs for each kind of intent it asks for: the request (method and target)
# and the body's fields that must equal the intent's asset, amount and destination. An
# unstake's and a redelegation's target names the position they act on, whose asset
# they have; an unstake's validator is the position's, a redelegation's the one signed.
_CLIENT_REQUESTS: dict[str, tuple[str, tuple[str, str, str | None]]] = {
    "withdrawal": ("/v1/clients/{client}/withdrawals", ("asset", "amount", "destination")),
    "stake": ("/v1/clients/{client}/stakes", ("asset", "amount", "validator")),
    "unstake": ("/v1/stakes/{stake}/unstake", ("", "amount", None)),
    "redelegate": ("/v1/stakes/{stake}/redelegate", ("", "amount", "validator")),
}
STAKING_KINDS = frozenset({"stake", "unstake", "redelegate"})
# An intent that acts on a position (its payload's `stake`), and the positions' own kinds.
ON_POSITION = frozenset({"unstake", "redelegate"})
# The most links from an intent back to its stake through redelegations (decision 0033).
MAX_POSITION_LINKS = 32


def _check_client_request(
    operation_id: str,
    intent: Intent,
    governance: Governance,
    decimals: Mapping[str, int],
    stake: Intent | None = None,
) -> str:
    """The client's own signature over its request, and the request is this intent (an
    unstake's or a redelegation's: of the client's own position `stake`, whose asset it
    has; an unstake's validator is the position's)."""
    request = signed_request(intent)
    if request is None:
        raise KeyAccessDenied(f"{operation_id}: no request signed by the client")
    checked = check_request_signature(
        request.method,
        request.target,
        request.body_bytes(),
        request.signature,
        governance.client_keys(),
    )
    if not checked.ok or checked.client_id != intent.client_id:
        raise KeyAccessDenied(f"{operation_id}: the client's request signature does not hold")
    template, (asset_field, amount_field, destination_field) = _CLIENT_REQUESTS[intent.kind]
    stake_id = (intent.payload or {}).get("stake")
    target = template.format(client=intent.client_id, stake=stake_id)
    if intent.kind in ON_POSITION and not isinstance(stake_id, str):
        raise KeyAccessDenied(f"{operation_id}: a {intent.kind} names the position it acts on")
    if (request.method, request.target) != ("POST", target):
        raise KeyAccessDenied(f"{operation_id}: the client signed another request")
    try:
        body = json.loads(request.body_bytes())
        if intent.kind in ON_POSITION:
            if stake is None:
                raise KeyAccessDenied(f"{operation_id}: no stake {stake_id} on record")
            asset = stake.asset
            destination = stake.destination if intent.kind == "unstake" else body["validator"]
        else:
            asset, destination = body[asset_field], body[destination_field]
        amount = parse_units(body[amount_field], decimals[asset])
    except (ValueError, KeyError, TypeError):
        raise KeyAccessDenied(f"{operation_id}: the signed body is not a {intent.kind}") from None
    if (asset, amount, destination) != (intent.asset, intent.amount, intent.destination):
        raise KeyAccessDenied(f"{operation_id}: the intent is not what the client signed")
    return f"request:{request.signature.key_id}:{request.signature.nonce}"


def _check_position(
    operation_id: str,
    intent: Intent,
    sources: Sequence[Intent],
    governance: Governance,
    decimals: Mapping[str, int],
) -> None:
    """An unstake or a redelegation acts on a position of the same client and asset, for
    no more than it holds: `sources`, the position first, then each redelegation's own
    source, ending at the stake (decision 0033). Every link is the one its successor
    names, no more than its own source, and its client's own signed request (checked from
    the stake up, each with its source); an unstake leaves the position's validator, a
    redelegation moves to another one."""
    if not sources:
        raise KeyAccessDenied(f"{operation_id}: no stake on record for this {intent.kind}")
    if len(sources) > MAX_POSITION_LINKS:
        raise KeyAccessDenied(f"{operation_id}: more than {MAX_POSITION_LINKS} redelegations")
    successor = intent
    for n, link in enumerate(sources):
        if link.kind not in POSITION_KINDS:
            raise KeyAccessDenied(f"{operation_id}: a {link.kind} is no position")
        if link.operation_id != (successor.payload or {}).get("stake"):
            raise KeyAccessDenied(f"{operation_id}: the stake on record is another one")
        if (link.client_id, link.asset) != (intent.client_id, intent.asset):
            raise KeyAccessDenied(f"{operation_id}: the stake is another client's or validator's")
        if successor.amount > link.amount:
            what = "unstakes" if successor is intent and intent.kind == "unstake" else "moves"
            raise KeyAccessDenied(f"{operation_id}: {what} more than the stake")
        if (link.kind == "stake") != (n == len(sources) - 1):
            raise KeyAccessDenied(f"{operation_id}: the position's sources do not end at its stake")
        successor = link
    for n in range(len(sources) - 1, -1, -1):
        link, source = sources[n], (sources[n + 1] if n + 1 < len(sources) else None)
        if source is not None and link.destination == source.destination:
            raise KeyAccessDenied(f"{link.operation_id}: redelegates to its own validator")
        _check_client_request(link.operation_id, link, governance, decimals, source)
    position = sources[0]
    if intent.kind == "unstake" and intent.destination != position.destination:
        raise KeyAccessDenied(f"{operation_id}: the stake is another client's or validator's")
    if intent.kind == "redelegate" and intent.destination == position.destination:
        raise KeyAccessDenied(f"{operation_id}: redelegates to its own validator")


def _check_confirmation(
    operation_id: str, intent: Intent, governance: Governance
) -> SettlementConfirmation:
    """The counterparty's own signature over the settlement this leg pays, and the leg
    is exactly one the counterparty confirmed the platform owes it, under this
    operation id (one confirmation, one operation per asset)."""
    raw = (intent.payload or {}).get("confirmation")
    try:
        confirmation = SettlementConfirmation.model_validate(raw, strict=False)
    except ValidationError:
        raise KeyAccessDenied(
            f"{operation_id}: no settlement confirmation signed by the counterparty"
        ) from None
    if not verify_confirmation(confirmation, governance.counterparty_keys()):
        raise KeyAccessDenied(
            f"{operation_id}: the counterparty's confirmation signature does not hold"
        )
    expected = leg_operation(confirmation.settlement_id, confirmation.counterparty, intent.asset)
    if operation_id != expected:
        raise KeyAccessDenied(f"{operation_id}: the confirmation is for {expected}")
    leg = confirmation.leg(intent.asset, "platform")
    if leg is None or (leg.amount, leg.to) != (intent.amount, intent.destination):
        raise KeyAccessDenied(f"{operation_id}: the leg is not what the counterparty confirmed")
    return confirmation


# The longest approval window (24 h) plus the signing grace, with room: a client request
# older than this at its first signature is not paid.
MAX_REQUEST_AGE = timedelta(hours=26)
# A settlement leg is released only after the provider's own legs arrived (which can take
# its leg timeout, a weekend): its confirmation stays payable this long, and each
# confirmed trade pays once whatever its age (the signer's record claims it).
MAX_CONFIRMATION_AGE = timedelta(days=7)
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Authorisation:
    """One payment the signer may sign for, and why."""

    operation_id: str
    kind: str
    client_id: str | None
    asset: str
    amount: int
    destination: str
    fee_cap: int
    intent_hash: str
    approvers: tuple[str, ...]
    policy_version: int
    velocity_limit: int | None = None
    holder: str = ""  # whose policy and velocity window: the client, or `settlement`
    # The client's signed request (or, for a settlement leg, the counterparty's signed
    # confirmation) this payment answers, as the signer's record claims it: one signed
    # request or confirmed leg pays one operation.
    request_claims: tuple[str, ...] = ()
    # An unstake's or a redelegation's position's validator (verified from its sources).
    source: str = ""


def authorise(
    operation_id: str,
    intent: Intent | None,
    approvals: Iterable[Approval],
    governance: Governance,
    now: datetime,
    decimals: Mapping[str, int],
    signed_in_window: int = 0,
    first_signed_at: datetime | None = None,
    max_request_age: timedelta = MAX_REQUEST_AGE,
    max_confirmation_age: timedelta = MAX_CONFIRMATION_AGE,
    screened: Callable[[str], bool] = lambda _destination: False,
    sources: Sequence[Intent] = (),
) -> Authorisation:
    """The payment `intent` authorises for `operation_id`, or KeyAccessDenied.

    Deny by default: no intent, another operation's intent, no request signed by a key
    governance registered to the client for exactly this asset, amount and destination
    (`decimals`: each asset's, to read the signed amount), no policy for the client and
    asset, a per-transaction, velocity or allow-list rule broken, or fewer valid
    approvals than the policy's quorum (distinct registered operators other than the
    requester, over exactly this intent, before it expired). `signed_in_window`: what
    the signer's own record shows it signed for the client and asset in the velocity
    window (other operations). `first_signed_at`: when the signer first signed for this
    operation, if it did (a fee bump re-signs the same payment after the intent's
    expiry: its approvals are counted as of that first signature). A stake, an unstake or
    a redelegation (of a position: `sources`, see _check_position) is a client's request
    like a withdrawal, under the client's policy for the asset, with no velocity window
    or destination allow-list (nothing leaves custody: the validator allow-list is the
    signer's own); its `source` is the position's validator."""
    if intent is None:
        raise KeyAccessDenied(f"{operation_id}: no intent on record")
    if intent.operation_id != operation_id:
        raise KeyAccessDenied(f"{operation_id}: the intent is for {intent.operation_id}")
    claims: tuple[str, ...] = ()
    if intent.kind in _CLIENT_REQUESTS and intent.client_id is not None:
        position = None
        if intent.kind in ON_POSITION:
            _check_position(operation_id, intent, sources, governance, decimals)
            position = sources[0]
        claims = (_check_client_request(operation_id, intent, governance, decimals, position),)
        request = signed_request(intent)
        assert request is not None
        # A request the signer never paid does not stay payable for ever (one refused,
        # voided or rejected long ago): a first signature comes within max_request_age
        # of the client's own signed timestamp.
        if first_signed_at is None and now - request.signature.timestamp > max_request_age:
            raise KeyAccessDenied(f"{operation_id}: the client's request is too old to pay")
        holder = intent.client_id
    elif intent.kind == "settlement_leg" and intent.client_id is None:
        # The platform's own leg: no client signs it. The counterparty signed what it is
        # owed (its confirmation of the settlement's net legs, by the key governance
        # registered to it); governance's settlement policy for the asset names the
        # counterparties' addresses it may pay (allow-list), limits and any quorum.
        confirmation = _check_confirmation(operation_id, intent, governance)
        if confirmation.confirmed_at > now + CLOCK_SKEW:
            raise KeyAccessDenied(f"{operation_id}: the confirmation is dated in the future")
        if first_signed_at is None and now - confirmation.confirmed_at > max_confirmation_age:
            raise KeyAccessDenied(f"{operation_id}: the counterparty's confirmation is too old")
        # Each confirmed trade settles once in this asset: the same trades confirmed again
        # under another settlement (after a cancellation at the provider) pay nothing more.
        claims = tuple(
            f"settled:{confirmation.counterparty}:{order}:{intent.asset}"
            for order in confirmation.orders
        )
        holder = SETTLEMENT_POLICY
    else:
        raise KeyAccessDenied(f"{operation_id}: a {intent.kind} intent is not signed here")
    if holder == SETTLEMENT_POLICY:
        policy = governance.policy(holder, intent.asset)
    else:
        policy = effective_policy(governance, holder, intent.asset)
    if policy is None:
        raise KeyAccessDenied(f"{operation_id}: {holder} has no {intent.asset} policy")
    rules = policy.rules
    staking = intent.kind in STAKING_KINDS
    velocity = None if staking else rules.daily_velocity_limit
    if rules.per_transaction_limit is not None and intent.amount > rules.per_transaction_limit:
        raise KeyAccessDenied(f"{operation_id}: above the per-transaction limit")
    if velocity is not None and signed_in_window + intent.amount > velocity:
        raise KeyAccessDenied(f"{operation_id}: above the daily velocity limit")
    if (
        not staking
        and rules.allow_list_required
        and intent.destination not in rules.allowed_destinations
    ):
        raise KeyAccessDenied(f"{operation_id}: the destination is not on the allow-list")
    threshold = rules.approval_threshold
    required = rules.approval_quorum if threshold is not None and intent.amount > threshold else 0
    if not staking and rules.screening_required and screened(intent.destination):
        # A screening hit compliance released: paid only with a quorum's signatures (an
        # unsigned release, or a worker that skipped the screening, pays nothing).
        required = max(required, rules.approval_quorum)
    quorum = count_approvals(
        intent,
        approvals,
        governance.operators(),
        requester(intent),
        first_signed_at or now,
    )
    if not quorum.met(required):
        raise KeyAccessDenied(
            f"{operation_id}: {len(quorum.counted)} valid approval(s), the policy needs {required}"
        )
    if first_signed_at is None and intent.expires_at <= now:
        raise KeyAccessDenied(f"{operation_id}: the intent expired")
    return Authorisation(
        operation_id=operation_id,
        kind=intent.kind,
        client_id=intent.client_id,
        asset=intent.asset,
        amount=intent.amount,
        destination=intent.destination,
        fee_cap=intent.fee_cap,
        intent_hash=intent.hash(),
        approvers=tuple(sorted(quorum.operators)),
        policy_version=policy.version,
        velocity_limit=velocity,
        holder=f"staking:{holder}" if staking else holder,
        request_claims=claims,
        source=sources[0].destination if intent.kind in ON_POSITION else "",
    )
