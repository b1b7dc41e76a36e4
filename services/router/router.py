"""The event router and command consumer: Kafka in, Temporal out.

- Chain events (custody.events.v1): a deposit seen starts its deposit saga (or wakes
  it: signal-with-start); deposit final/reorged wake it; a platform transaction
  mined/final/reorged wakes the withdrawal saga of its operation id. The sagas poll
  as well, so a lost or late event only delays them.
- Commands (custody.commands.v1): `custody.command.withdrawal.create.v1` starts a
  withdrawal, `custody.command.stake.create.v1` a stake and
  `custody.command.unstake.create.v1` an unstake,
  `custody.command.redelegation.create.v1` a redelegation, each through the same path as the
  REST API (same validation, same signed request, same idempotency); the answer goes
  to the events topic as
  `custody.command.accepted.v1` or `custody.command.rejected.v1`, keyed by the
  command's subject, with the command id as correlation id.

Offsets are committed after a batch is handled, so a crash re-handles it: starting a
saga and signalling are idempotent, and answers carry deterministic ids. A batch that
fails is read again (a dependency that did not answer: the database, Temporal). A
command that fails with an unexpected error `COMMAND_ATTEMPTS` times in a row is
answered `custody.command.failed.v1` with CUS-0000 (as the API answers a 500), and the
router goes on: one bad command must not hold up every command behind it. Not a
refusal: its outcome is unknown (the error may have come after the saga started), so the
bank sends it again with the same idempotency key and is answered with what was done
under it. A command given up is not run again when its batch is read again.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaError
from pydantic import BaseModel, ValidationError
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.service import RPCError

from adapters.kafka import Connection, client_config
from sagas.chainwatch import (
    DEPOSIT_FINAL,
    DEPOSIT_REORGED,
    DEPOSIT_SEEN,
    TX_FINAL,
    TX_MINED,
    TX_REORGED,
)
from sagas.commands import (
    ACCEPTED,
    CREATE_REDELEGATION,
    CREATE_STAKE,
    CREATE_UNSTAKE,
    CREATE_WITHDRAWAL,
    FAILED,
    REJECTED,
    CommandAnswer,
    CreateRedelegationCommand,
    CreateStakeCommand,
    CreateUnstakeCommand,
    CreateWithdrawalCommand,
)
from sagas.deposit import DepositInput, DepositNudge, DepositState, workflow_id
from sagas.deposit.workflows import DepositWorkflow
from sagas.errors import CustodyError, NotFound, RequestInvalid
from sagas.events import Envelope
from sagas.operations import OperationRecord
from sagas.ports import EventBus
from sagas.topics import COMMANDS, EVENTS
from sagas.withdrawal import TASK_QUEUE, ChainNudge
from sagas.withdrawal.intent import signed_requester
from services.app.stakes import RedelegateBody, StakeBody, Stakes, UnstakeBody
from services.app.withdrawals import WithdrawalBody, Withdrawals

log = logging.getLogger("custody.router")
SOURCE = "/custody/router"
_NAMESPACE = uuid.UUID("0f9b3c51-3c3e-4a55-8d7e-61c2a8a4e1d2")
COMMAND_ATTEMPTS = 5
GIVEN_UP_KEPT = 10_000  # command ids given up, remembered so a re-read skips them
# A dependency that did not answer: the batch is read again for as long as it takes.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sqlite3.OperationalError,
    RPCError,
    OSError,  # ConnectionError, TimeoutError, an unreachable host
)


class EventRouter:
    def __init__(
        self,
        temporal: Client,
        withdrawals: Withdrawals,
        bus: EventBus,
        kafka: Connection,
        group: str = "custody-router",
        start: str = "earliest",
        deposit_poll_seconds: int = 15,
        task_queue: str = TASK_QUEUE,
        is_ours: Callable[[str], bool] = lambda _address: True,
        stakes: Stakes | None = None,
    ) -> None:
        self._is_ours = is_ours
        self._stakes = stakes
        self._queue = task_queue
        self._temporal = temporal
        self._withdrawals = withdrawals
        self._bus = bus
        self._poll = deposit_poll_seconds
        self._config = client_config(
            kafka,
            **{
                "group.id": group,
                "auto.offset.reset": start,
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            },
        )
        self._consumer = self._subscribe()
        self._failures: Counter[str] = Counter()
        self._given_up: dict[str, None] = {}  # insertion-ordered: the oldest go first

    def _subscribe(self) -> Consumer:
        consumer = Consumer(self._config)
        consumer.subscribe([EVENTS.name, COMMANDS.name])
        return consumer

    async def ready(self, timeout: float = 30.0) -> None:
        """Wait until the group has assigned this consumer its partitions."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self._consumer.assignment():
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("no partitions assigned")
            await self.step(timeout=0.2)

    def close(self) -> None:
        self._consumer.close()

    def rewind(self) -> None:
        """After a failed batch: drop what was read but not committed, and read it again."""
        self._consumer.close()
        self._consumer = self._subscribe()

    async def step(self, timeout: float = 1.0) -> int:
        """Handle one batch; returns how many records it had."""
        msgs = await asyncio.to_thread(self._consumer.consume, 100, timeout)
        handled = 0
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("kafka: %s", err.str())
                continue
            value = msg.value()
            if value is None:
                continue
            try:
                event = Envelope.from_json(value)
            except ValidationError:
                if msg.topic() == COMMANDS.name:
                    where = f"{msg.topic()}/{msg.partition()}/{msg.offset()}"
                    await self._answer_invalid(msg.key(), where, "the record is not a CloudEvent")
                continue
            if msg.topic() == COMMANDS.name:
                await self._command(event)
            else:
                try:
                    await self._event(event)
                except (KeyError, ValueError, TypeError) as exc:
                    # A malformed event must not stop every saga behind it: log, skip.
                    log.error("skipping event %s (%s): %s", event.id, event.type, exc)
            handled += 1
        if msgs:
            await asyncio.to_thread(self._consumer.commit, asynchronous=False)
        return handled

    # --- chain events -> sagas ----------------------------------------------------
    async def _event(self, event: Envelope) -> None:
        data: dict[str, Any] = event.payload()
        if event.type == DEPOSIT_SEEN:
            if not await asyncio.to_thread(self._is_ours, str(data["address"])):
                # Another deployment's watcher on a shared topic: not ours to start.
                log.warning("deposit to %s is not to one of our addresses", data["address"])
                return
            dep = DepositInput(
                chain=data["chain"],
                tx_hash=data["tx_hash"],
                position=data["position"],
                address=data["address"],
                account_id=data["account_id"],
                asset=data["asset"],
                amount=int(data["amount"]),
                poll_seconds=self._poll,
            )
            await self._temporal.start_workflow(
                DepositWorkflow.run,
                dep,
                id=dep.operation_id,
                task_queue=self._queue,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                start_signal="chain_event",
                start_signal_args=[DepositNudge(state="seen")],
            )
        elif event.type in (DEPOSIT_FINAL, DEPOSIT_REORGED):
            state: DepositState = "final" if event.type == DEPOSIT_FINAL else "reorged"
            wid = workflow_id(data["chain"], data["tx_hash"], data["position"])
            await self._signal(wid, DepositNudge(state=state))
        elif event.type in (TX_MINED, TX_FINAL, TX_REORGED):
            await self._signal(
                data["operation_id"], ChainNudge(event_type=event.type, tx_hash=data["tx_hash"])
            )

    async def _signal(self, workflow_id: str, payload: BaseModel) -> None:
        try:
            await self._temporal.get_workflow_handle(workflow_id).signal("chain_event", payload)
        except RPCError as exc:  # not found or finished: the saga has no use for it
            log.debug("signal to %s not delivered: %s", workflow_id, exc)

    # --- commands -> sagas --------------------------------------------------------
    def _answer(self, command_id: str, subject: str, type_: str, data: dict[str, Any]) -> None:
        # An answer's id derives from the command's (a command handled twice after a
        # crash is answered twice with one id); a failed answer's from its own name, so a
        # later answer to the same command is never taken for a duplicate of it.
        name = f"{command_id}:failed" if type_ == FAILED else command_id
        self._bus.publish(
            EVENTS.name,
            Envelope(
                id=str(uuid.uuid5(_NAMESPACE, name)),
                source=SOURCE,
                type=type_,
                subject=subject,
                data=CommandAnswer(correlation_id=command_id, **data).model_dump(
                    mode="json", exclude_none=True
                ),
            ),
        )

    async def _answer_invalid(self, key: bytes | None, where: str, detail: str) -> None:
        """Answer a record that is not a command; its position names it, so a record read
        again after a crash is answered with the same event id."""
        subject = (key or b"unknown").decode(errors="replace")
        err = RequestInvalid(detail)
        self._answer(f"invalid:{where}", subject, REJECTED, _problem(err))

    async def _command(self, command: Envelope) -> None:
        start = {
            CREATE_WITHDRAWAL: self._withdraw,
            CREATE_STAKE: self._stake,
            CREATE_UNSTAKE: self._unstake,
            CREATE_REDELEGATION: self._redelegate,
        }.get(command.type)
        if start is None or (command.type != CREATE_WITHDRAWAL and self._stakes is None):
            err = RequestInvalid(f"unknown command type {command.type}")
            self._answer(command.id, command.subject, REJECTED, _problem(err))
            return
        if command.id in self._given_up:
            return  # answered failed when this batch was read before
        try:
            op = await start(command.payload())
        except ValidationError as exc:
            first = exc.errors()[0]
            detail = f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
            self._answer(command.id, command.subject, REJECTED, _problem(RequestInvalid(detail)))
            return
        except CustodyError as exc:
            if exc.transient:
                raise
            self._answer(command.id, command.subject, REJECTED, _problem(exc))
            return
        except _UNAVAILABLE:
            raise
        except Exception:
            self._failures[command.id] += 1
            if self._failures[command.id] < COMMAND_ATTEMPTS:
                raise  # read again: it may have been a race
            log.exception(
                "command %s (%s) failed %d times", command.id, command.type, COMMAND_ATTEMPTS
            )
            del self._failures[command.id]
            unexpected = CustodyError(
                "an unexpected error; it was logged. Its outcome is unknown: send the command "
                "again with the same idempotency key"
            )
            self._answer(command.id, command.subject, FAILED, _problem(unexpected))
            self._given_up[command.id] = None
            while len(self._given_up) > GIVEN_UP_KEPT:
                del self._given_up[next(iter(self._given_up))]
            return
        self._failures.pop(command.id, None)
        self._answer(
            command.id,
            command.subject,
            ACCEPTED,
            {"operation_id": op.id, "state": op.state, "error_code": op.error_code},
        )

    async def _withdraw(self, data: dict[str, Any]) -> OperationRecord:
        body = CreateWithdrawalCommand.model_validate(data)
        op, _created = await self._withdrawals.create(
            body.client_id,
            body.idempotency_key,
            WithdrawalBody(
                asset=body.asset,
                amount=body.amount,
                destination=body.destination,
                # The bank's user the client system named in the body it signed (the
                # signature is checked against this whole body).
                requested_by=signed_requester(body.request),
            ),
            body.requested_by,
            body.request,
        )
        return op

    async def _stake(self, data: dict[str, Any]) -> OperationRecord:
        assert self._stakes is not None
        body = CreateStakeCommand.model_validate(data)
        stake = StakeBody(asset=body.asset, amount=body.amount, validator=body.validator)
        op, _created = await self._stakes.create(
            body.client_id, body.idempotency_key, stake, body.requested_by, body.request
        )
        return op

    async def _unstake(self, data: dict[str, Any]) -> OperationRecord:
        assert self._stakes is not None
        body = CreateUnstakeCommand.model_validate(data)
        stake = await asyncio.to_thread(self._stakes.stake, body.stake_id)
        if stake is None or stake.client_id != body.client_id:
            raise NotFound(f"stake {body.stake_id}")  # not even whose it is
        op, _created = await self._stakes.unstake(
            stake,
            body.idempotency_key,
            UnstakeBody(amount=body.amount),
            body.requested_by,
            body.request,
        )
        return op

    async def _redelegate(self, data: dict[str, Any]) -> OperationRecord:
        assert self._stakes is not None
        body = CreateRedelegationCommand.model_validate(data)
        position = await asyncio.to_thread(self._stakes.stake, body.stake_id)
        if position is None or position.client_id != body.client_id:
            raise NotFound(f"stake {body.stake_id}")  # not even whose it is
        op, _created = await self._stakes.redelegate(
            position,
            body.idempotency_key,
            RedelegateBody(amount=body.amount, validator=body.validator),
            body.requested_by,
            body.request,
        )
        return op


def _problem(err: CustodyError) -> dict[str, Any]:
    return {"code": err.code, "title": err.title, "detail": err.detail}
