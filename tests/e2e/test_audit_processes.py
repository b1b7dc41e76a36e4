"""The audit writer and the balances projector are platform processes (issue 15, part
0): started with the others, killed like them. The writer, SIGKILLed while events
arrive and started again, leaves every event in the chain exactly once and a chain that
verifies; the projector, SIGKILLed and started again, rebuilds every balance from the
events and the compacted balances topic agrees with the ledger. (The stack's topics are
shared by every platform the tiers start, each on its own database: the checks are on
what is this platform's alone, a new client's account.)"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections import Counter

from adapters.kafka.audit_log import read_audit
from adapters.kafka.bus import KafkaEventBus
from sagas import accounts
from sagas.topics import AUDIT, BALANCES, EVENTS
from tests.e2e.conftest import ETH, address, credited, ledger_total, new_client
from tests.e2e.harness import Running, wait_for

# One platform with the defaults, shared with the other modules that set this (conftest).
SHARED_PLATFORM = True


def _event_ids(run: Running) -> list[str]:
    bus = KafkaEventBus(run.settings.kafka_client("admin"), client_id="e2e-audit-check")
    group = f"e2e-audit-check-{uuid.uuid4().hex}"
    ids: list[str] = []
    while events := bus.read(EVENTS.name, group, 5_000, 5.0):
        ids += [e.id for e in events]
    return ids


def test_the_audit_writer_killed_while_events_arrive_chains_each_event_once(
    run: Running,
) -> None:
    client_id, _ops, client = new_client(run, "aud")
    run.faucet.fund_eth(address(client, client_id, "ETH"), ETH)
    run.kill("audit")  # while the deposit's events are on their way
    try:
        credited(run, client, client_id, {"ETH": ETH})
        # Events published while no writer runs wait for it on the events topic.
        more, _ops2, other = new_client(run, "aud")
        run.faucet.fund_eth(address(other, more, "ETH"), 2 * ETH)
        credited(run, other, more, {"ETH": 2 * ETH})
    finally:
        run.start_audit()
    print(run.audit_caught_up())  # the lag, printed

    chained = [
        r.event_id for _, r in read_audit(run.settings.kafka_client("admin"), AUDIT.name) if r
    ]
    twice = [i for i, n in Counter(chained).items() if n > 1]
    assert twice == [], f"chained twice: {twice[:5]}"
    missing = set(_event_ids(run)) - set(chained)
    assert missing == set(), f"{len(missing)} events not chained, e.g. {sorted(missing)[:3]}"
    verified = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "audit", "verify"],
        env=run.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr[-2000:]
    assert "OK" in verified.stdout


def _published_balances(run: Running) -> dict[str, int]:
    """The latest total of each account on the compacted balances topic."""
    bus = KafkaEventBus(run.settings.kafka_client("admin"), client_id="e2e-balances-check")
    group = f"e2e-balances-check-{uuid.uuid4().hex}"
    latest: dict[str, int] = {}
    while events := bus.read(BALANCES.name, group, 5_000, 3.0):
        for event in events:
            latest[event.subject] = int(event.data["total"])
    return latest


def test_the_projector_killed_and_started_again_publishes_the_ledgers_balances(
    run: Running,
) -> None:
    run.kill("projector")
    client_id, _ops, client = new_client(run, "proj")
    run.faucet.fund_eth(address(client, client_id, "ETH"), 3 * ETH)
    credited(run, client, client_id, {"ETH": 3 * ETH})  # booked while no projector ran
    account = accounts.client(client_id, "ETH")
    assert _published_balances(run).get(account) is None
    run.start_projector()  # rebuilt from the events topic alone
    assert ledger_total(run, account) == 3 * ETH
    wait_for(
        f"{account} published",
        lambda: _published_balances(run).get(account) == ledger_total(run, account),
        timeout=60,
    )
