"""The deposit saga in seconds: its real workflow and activities over the fakes of the
ledger, the operation store, the screening and the chain watcher's observations
(tests/fakes_chains.py), on the time-skipping test server, started as the event router
starts it (signal-with-start on each deposit_seen, a new run once one has ended).

A deposit is credited to its client once when final, however often its event comes;
credited by the saga's own polling when the final event is lost; cancelled when a reorg
drops it before finality, and credited once when it is mined again; quarantined when
its source is screened; credited with what the watcher recorded, not the event's word;
never credited on an event for an output the watcher never saw."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy

from sagas import accounts
from sagas.deposit import DepositInput, DepositNudge, DepositResult, DepositState, workflow_id
from sagas.deposit.activities import DepositActivities
from sagas.deposit.events import QUARANTINED_ALERT
from sagas.deposit.workflows import DepositWorkflow
from sagas.ledger import BTC
from tests.fakes import FakeOperationStore, InMemoryLedger
from tests.fakes_chains import FakeDepositObservations, Output
from tests.sagas.conftest import QUEUE, SagaServer, books, until

CLIENT = "acme"
AMOUNT = 25_000_000  # 0.25 BTC
SERVER = "deposits"  # no wall-clock times in this saga: its scenarios share a server


@dataclass
class DenyList:
    """sagas.ports.Screening: every deposit is funded from `source`."""

    denied: set[str] = field(default_factory=set)
    source: str = "sb1qfunder"

    def sources(self, chain: str, tx_hash: str) -> list[str]:
        return [self.source]

    def check(self, chain: str, addresses: Sequence[str]) -> str | None:
        denied = {d.lower() for d in self.denied}  # as DenyListScreening: in any case
        hits = [a for a in addresses if a.lower() in denied]
        return f"{hits[0]} is on the deny list" if hits else None


class CountedObservations(FakeDepositObservations):
    """Counts the saga's polls; `on_poll(n)` runs before the n-th is answered."""

    def __init__(self) -> None:
        super().__init__(confirmations=6)
        self.polls = 0
        self.on_poll: Callable[[int], None] = lambda _n: None

    def state(self, chain: str, tx_hash: str, position: str) -> DepositState:
        self.polls += 1
        self.on_poll(self.polls)
        return super().state(chain, tx_hash, position)


@dataclass
class Watched:
    ledger: InMemoryLedger
    ops: FakeOperationStore
    chain: CountedObservations
    screening: DenyList
    client: Client | None = None

    def output(self, amount: int = AMOUNT) -> Output:
        return Output(
            tx_hash=uuid.uuid4().hex * 2,
            position="vout0",
            address="sb1qacmedeposit",
            account_id=accounts.client(CLIENT, "BTC"),
            asset="BTC",
            amount=amount,
        )

    def available(self, account: str = accounts.client(CLIENT, "BTC")) -> int:
        return self.ledger.balance(account).available

    def credits(self) -> int:
        return len(self.ledger.history(accounts.client(CLIENT, "BTC")))

    def steps(self, output: Output) -> list[str]:
        return [s.step for s in self.ops.timeline(workflow_id("bitcoin", output.tx_hash, "vout0"))]

    async def seen(
        self, output: Output, poll_seconds: int = 15, **said: Any
    ) -> WorkflowHandle[Any, DepositResult]:
        """The router on a deposit_seen event: start the saga, or wake the one running.
        `said` overrides what the event carries (the watcher's record is left alone)."""
        assert self.client is not None
        dep = DepositInput(
            chain=output.chain,
            tx_hash=output.tx_hash,
            position=output.position,
            address=output.address,
            account_id=output.account_id,
            asset=output.asset,
            amount=output.amount,
            poll_seconds=poll_seconds,
        ).model_copy(update=said)
        return await self.client.start_workflow(
            DepositWorkflow.run,
            dep,
            id=dep.operation_id,
            task_queue=QUEUE,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            start_signal="chain_event",
            start_signal_args=[DepositNudge(state="seen")],
        )

    async def nudge(self, handle: WorkflowHandle[Any, Any], state: DepositState) -> None:
        """The router on a deposit_final or deposit_reorged event."""
        await handle.signal(DepositWorkflow.chain_event, DepositNudge(state=state))

    async def polled(self, n: int = 1) -> None:
        """Wait (real time) until the saga has asked for the output's state n more times."""
        target = self.chain.polls + n
        await until(lambda: self.chain.polls >= target)


def watch(
    test_server: SagaServer,
    scenario: Callable[[Watched], Awaitable[None]],
    denied: set[str] | None = None,
) -> Watched:
    watched = Watched(
        books(BTC, CLIENT), FakeOperationStore(), CountedObservations(), DenyList(denied or set())
    )
    acts = DepositActivities(watched.ledger, watched.ops, watched.chain, watched.screening)

    async def go(client: Client) -> None:
        watched.client = client
        await scenario(watched)

    activities: list[Callable[..., Any]] = [
        *acts.all(),
    ]
    test_server.run([DepositWorkflow], activities, go, shared=SERVER)
    return watched


def test_a_final_deposit_is_credited_once_however_often_it_is_seen(
    test_server: SagaServer,
) -> None:
    seen: dict[str, Any] = {}

    async def scenario(w: Watched) -> None:
        out = seen["out"] = w.output()
        block = w.chain.mine(out)
        first = await w.seen(out)
        await w.polled()
        again = await w.seen(out)  # the event redelivered: it wakes the same run
        seen["same_run"] = again.first_execution_run_id == first.first_execution_run_id
        await w.polled()
        seen["before_final"] = w.available()
        w.chain.bury(block)
        await w.nudge(first, "final")
        seen["result"] = await first.result()
        # Redelivered after the credit (a consumer restarted behind its commit): a new
        # run, which finds the credit made.
        seen["repeat"] = await (await w.seen(out)).result()

    w = watch(test_server, scenario)
    result, repeat = seen["result"], seen["repeat"]
    assert seen["same_run"] and seen["before_final"] == 0
    assert (result.state, result.account) == ("credited", accounts.client(CLIENT, "BTC"))
    assert (repeat.state, repeat.account) == ("credited", accounts.client(CLIENT, "BTC"))
    assert w.available() == AMOUNT and w.credits() == 1
    assert w.available(accounts.omnibus("BTC")) == -AMOUNT
    assert w.ledger.totals("BTC")[0] == AMOUNT  # one transfer posted in all
    assert w.steps(seen["out"]) == ["seen", "credited"]


def test_a_lost_final_event_is_made_up_for_by_polling(test_server: SagaServer) -> None:
    """Final after half an hour of one-minute polls, and nobody signals it."""
    seen: dict[str, Any] = {}

    async def scenario(w: Watched) -> None:
        out = w.output()
        block = w.chain.mine(out)
        w.chain.on_poll = lambda n: w.chain.bury(block) if n == 30 else None
        seen["result"] = await (await w.seen(out, poll_seconds=60)).result()

    w = watch(test_server, scenario)
    assert seen["result"].state == "credited"
    assert w.chain.polls == 30
    assert w.available() == AMOUNT


def test_a_deposit_unconfirmed_for_long_waits_on_in_new_runs_and_is_credited_once(
    test_server: SagaServer,
) -> None:
    """Final after 40 hourly polls, with at most 50 events a run: it goes on in new runs."""
    seen: dict[str, Any] = {}

    async def scenario(w: Watched) -> None:
        out = w.output()
        block = w.chain.mine(out)
        w.chain.on_poll = lambda n: w.chain.bury(block) if n == 40 else None
        handle = await w.seen(out, poll_seconds=3600, history_limit=50)
        seen["result"] = await handle.result()
        # Signal-with-start gives the run it started as the handle's result run.
        first = w.client.get_workflow_handle(handle.id, run_id=handle.result_run_id)
        seen["first"] = (await first.describe()).status
        seen["steps"] = w.steps(out)

    w = watch(test_server, scenario)
    assert seen["first"] == WorkflowExecutionStatus.CONTINUED_AS_NEW
    assert seen["result"].state == "credited"
    assert w.chain.polls == 40
    assert w.available() == AMOUNT and w.credits() == 1
    assert seen["steps"].count("seen") == 1  # recorded by the first run only


def test_a_deposit_reorged_before_finality_is_cancelled_then_credited_once_mined_again(
    test_server: SagaServer,
) -> None:
    seen: dict[str, Any] = {}

    async def scenario(w: Watched) -> None:
        out = seen["out"] = w.output()
        first = await w.seen(out)
        w.chain.drop(w.chain.mine(out))
        await w.nudge(first, "reorged")
        seen["cancelled"] = await first.result()
        seen["after_reorg"] = w.available()
        block = w.chain.mine(out)  # the same transaction in a block of the new branch
        again = await w.seen(out)
        w.chain.bury(block)
        await w.nudge(again, "final")
        seen["credited"] = await again.result()

    w = watch(test_server, scenario)
    assert seen["cancelled"].state == "cancelled" and seen["after_reorg"] == 0
    assert seen["credited"].state == "credited"
    assert w.available() == AMOUNT and w.credits() == 1
    assert w.steps(seen["out"]) == ["seen", "cancelled", "credited"]


def test_a_deposit_from_a_denied_source_is_quarantined_and_alerted(
    test_server: SagaServer,
) -> None:
    seen: dict[str, Any] = {}

    async def scenario(w: Watched) -> None:
        out = w.output()
        w.chain.bury(w.chain.mine(out))
        seen["result"] = await (await w.seen(out)).result()

    w = watch(test_server, scenario, denied={"sb1qfunder"})
    assert (seen["result"].state, seen["result"].account) == ("quarantined", "quarantine:BTC")
    assert "deny list" in seen["result"].reason
    assert w.available() == 0 and w.available(accounts.quarantine("BTC")) == AMOUNT
    alerts = [e for topic, e in w.ops.outbox if topic == "custody.alerts.v1"]
    assert [a.type for a in alerts] == [QUARANTINED_ALERT]


def test_the_credit_is_what_the_watcher_recorded_not_what_the_event_said(
    test_server: SagaServer,
) -> None:
    seen: dict[str, Any] = {}

    async def scenario(w: Watched) -> None:
        out = w.output()
        w.chain.bury(w.chain.mine(out))
        seen["result"] = await (await w.seen(out, amount=100 * AMOUNT)).result()

    w = watch(test_server, scenario)
    assert seen["result"].state == "credited"
    assert w.available() == AMOUNT


def test_an_event_for_an_output_the_watcher_never_saw_credits_nothing(
    test_server: SagaServer,
) -> None:
    """A forged deposit_seen: the saga waits for the watcher for as long as it runs."""
    seen: dict[str, Any] = {}

    async def scenario(w: Watched) -> None:
        handle = await w.seen(w.output(), poll_seconds=60)
        with contextlib.suppress(TimeoutError):  # skipped time passes meanwhile
            await asyncio.wait_for(handle.result(), timeout=2)
        seen["described"] = await handle.describe()
        await handle.terminate("the test is over")  # the server is shared

    w = watch(test_server, scenario)
    assert w.chain.polls > 1
    assert w.available() == 0 and w.ledger.totals("BTC") == (0, 0)
    assert seen["described"].status is not None and seen["described"].status.name == "RUNNING"
