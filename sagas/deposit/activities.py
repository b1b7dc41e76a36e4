"""The deposit saga's activities, each idempotent by the deposit's operation id."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from temporalio import activity

from sagas import accounts
from sagas.deposit import DepositInput, DepositResult, DepositState
from sagas.deposit.events import QUARANTINED_ALERT, DepositQuarantined, DepositStep, event_type
from sagas.errors import DependencyUnavailable, UnknownAccount
from sagas.events import Envelope
from sagas.ledger import Transfer
from sagas.operations import OperationRecord, request_hash, step_event_id
from sagas.ports import DepositObservations, Ledger, OperationStore, Screening
from sagas.topics import ALERTS, EVENTS

SOURCE = "/custody/deposit"


def _client_of(account_id: str) -> str | None:
    parts = account_id.split(":")
    return parts[1] if len(parts) == 3 and parts[0] == "client" else None


def event(dep: DepositInput, step: str, subject: str, **data: object) -> tuple[str, Envelope]:
    payload = DepositStep(
        operation_id=dep.operation_id,
        client_id=_client_of(dep.account_id),
        chain=dep.chain,
        tx_hash=dep.tx_hash,
        position=dep.position,
        address=dep.address,
        asset=dep.asset,
        amount=str(dep.amount),
        **data,  # type: ignore[arg-type]
    )
    return EVENTS.name, Envelope(
        id=step_event_id(dep.operation_id, step),
        source=SOURCE,
        type=event_type(step),
        subject=subject,
        data=payload.model_dump(mode="json"),
    )


class DepositActivities:
    def __init__(
        self,
        ledger: Ledger,
        operations: OperationStore,
        observations: DepositObservations,
        screening: Screening,
    ) -> None:
        self._ledger = ledger
        self._ops = operations
        self._observations = observations
        self._screening = screening

    def all(self) -> list[Callable[..., Any]]:
        """Every activity of the saga, as a worker registers them."""
        return [
            self.record_seen,
            self.observed_state,
            self.screen,
            self.credit,
            self.cancel,
        ]

    @activity.defn(name="deposit.record_seen")
    def record_seen(self, dep: DepositInput) -> None:
        now = datetime.now(UTC)
        body = {"chain": dep.chain, "tx": dep.tx_hash, "pos": dep.position, "amt": dep.amount}
        self._ops.create(
            OperationRecord(
                id=dep.operation_id,
                kind="deposit",
                client_id=_client_of(dep.account_id),
                asset=dep.asset,
                chain=dep.chain,
                amount=dep.amount,
                destination=dep.address,
                request_hash=request_hash(body),  # type: ignore[arg-type]
                requested_by="chainwatch",
                state="seen",
                created_at=now,
                updated_at=now,
            ),
            [event(dep, "seen", dep.account_id)],
        )

    @activity.defn(name="deposit.observed_state")
    def observed_state(self, dep: DepositInput) -> DepositState:
        return self._observations.state(dep.chain, dep.tx_hash, dep.position)

    @activity.defn(name="deposit.screen")
    def screen(self, dep: DepositInput) -> str | None:
        """None if the source is clean, else why it was refused."""
        return self._screening.check(dep.chain, self._screening.sources(dep.chain, dep.tx_hash))

    def _target(self, dep: DepositInput) -> str | None:
        """The ledger account to credit: the address's account in the deposit's asset (a
        token sent to a client's Ethereum address is the client's token); None if the
        holder has no account in that asset."""
        target = accounts.sibling(dep.account_id, dep.asset)
        try:
            self._ledger.balance(target)
        except UnknownAccount:
            return None
        return target

    @activity.defn(name="deposit.credit")
    def credit(self, dep: DepositInput, screening_hit: str | None) -> DepositResult:
        # What is credited is what the watcher recorded as final, not what the event said.
        recorded = self._observations.final(dep.chain, dep.tx_hash, dep.position)
        if recorded is None:
            raise DependencyUnavailable(f"{dep.operation_id}: no final observation (yet)")
        address, account_id, asset, amount = recorded
        dep = dep.model_copy(
            update={"address": address, "account_id": account_id, "asset": asset, "amount": amount}
        )
        target = self._target(dep)
        reason = screening_hit or (
            None if target is not None else f"no {dep.asset} account for {dep.account_id}"
        )
        account = accounts.quarantine(dep.asset) if reason else target
        assert account is not None
        self._ledger.submit(
            [
                Transfer(
                    id=dep.operation_id,
                    debit_account=accounts.omnibus(dep.asset),
                    credit_account=account,
                    asset=dep.asset,
                    amount=dep.amount,
                    reference=f"{dep.chain}:{dep.tx_hash}:{dep.position}",
                )
            ]
        )
        if reason is None:
            self._ops.advance(
                dep.operation_id,
                "credited",
                [event(dep, "credited", account, account=account)],
                detail={"account": account},
                state="credited",
            )
            return DepositResult(operation_id=dep.operation_id, state="credited", account=account)
        alert = Envelope(
            id=step_event_id(dep.operation_id, "quarantine_alert"),
            source=SOURCE,
            type=QUARANTINED_ALERT,
            subject=dep.operation_id,
            data=DepositQuarantined(
                operation_id=dep.operation_id, account=dep.account_id, reason=reason
            ).model_dump(mode="json"),
        )
        self._ops.advance(
            dep.operation_id,
            "quarantined",
            [(ALERTS.name, alert), event(dep, "quarantined", dep.account_id, reason=reason)],
            detail={"reason": reason},
            state="quarantined",
        )
        return DepositResult(
            operation_id=dep.operation_id, state="quarantined", account=account, reason=reason
        )

    @activity.defn(name="deposit.cancel")
    def cancel(self, dep: DepositInput) -> DepositResult:
        """Reorged out before finality: nothing was credited, nothing will be."""
        self._ops.advance(
            dep.operation_id,
            "cancelled",
            [event(dep, "cancelled", dep.account_id)],
            detail={"reason": "reorged out before finality"},
            state="cancelled",
        )
        return DepositResult(
            operation_id=dep.operation_id, state="cancelled", reason="reorged before finality"
        )
