"""`custody demo`: the stack smoke scenario, then the custody scenario.

First one real round trip through each of the six services via the platform's own
adapters; then the whole platform as processes, driven over its REST API as a bank
would (services/cli/scenario.py): deposits, withdrawals, approvals, reconciliation,
events and the audit chain, printed step by step.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid

from adapters.chains.bitcoin.node import BtcdNode
from adapters.chains.ethereum.faucet import DevChainFaucet
from adapters.chains.ethereum.node import Web3EthereumNode
from adapters.chains.ethereum.signer import InMemorySigner
from adapters.kafka.audit_log import read_audit
from adapters.kafka.bus import KafkaEventBus
from adapters.keys.openbao import OpenBaoAuditKeys, OpenBaoKeyWrapper
from adapters.ledger.sql import SqlLedger
from adapters.sql.checkpoints import PostgresCheckpointStore, SqliteCheckpointStore
from adapters.temporal import connect
from sagas import topics
from sagas.audit import ed25519_checker, verify
from sagas.errors import KeyAccessDenied
from sagas.events import Envelope
from sagas.ledger import BTC, Account, AccountKind, PostPending, Transfer
from sagas.money import format_units
from sagas.ports import Checkpoint, CheckpointStore, TopicSpec
from sagas.smoke import TASK_QUEUE, ReleaseSignal, SmokeInput, SmokeResult
from services.audit.main import build_writer
from services.projector.projector import replay
from services.relay.relay import Relay
from services.settings import PlatformSettings
from services.worker.bootstrap import build_workers

SMOKE_TOPIC = "custody.smoke.v1"


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _kafka(s: PlatformSettings) -> None:
    _step("Kafka: publish an event and read it back")
    bus = KafkaEventBus(s.kafka_client("admin"), client_id="custody-demo")
    bus.ensure_topics([TopicSpec(SMOKE_TOPIC, partitions=3, config={"retention.ms": "-1"})])
    event = Envelope(
        source="/custody/demo",
        type="custody.smoke.pinged.v1",
        subject="demo-account",
        data={"run": uuid.uuid4().hex},
    )
    bus.publish(SMOKE_TOPIC, event)
    group = f"custody-demo-{uuid.uuid4().hex[:8]}"
    seen = [
        e for e in bus.read(SMOKE_TOPIC, group, max_events=10_000, timeout=10) if e.id == event.id
    ]
    bus.close()
    print(f"published {event.type} id={event.id} key={event.subject}")
    print(f"read back by a new consumer group: {'yes' if seen == [event] else 'NO'}")
    if seen != [event]:
        raise SystemExit("Kafka round trip failed")


async def _temporal(s: PlatformSettings) -> None:
    _step("Temporal: run the smoke workflow on a worker")
    client = await connect(s.temporal_address, s.temporal_namespace, s.temporal_transport())
    workers = build_workers(client)
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        wf_id = f"demo-smoke-{uuid.uuid4().hex[:8]}"
        handle = await client.start_workflow(
            "Smoke",
            SmokeInput(message="hello custody", wait_for_release=True),
            id=wf_id,
            task_queue=TASK_QUEUE,
            result_type=SmokeResult,
        )
        await handle.signal("release", ReleaseSignal(operator="demo-operator"))
        result = await handle.result()
        print(f"workflow {wf_id}: sha256={result.sha256[:16]}... released by {result.released_by}")
    finally:
        for w in workers:
            await w.shutdown()
        await asyncio.gather(*tasks, return_exceptions=True)


def _openbao(s: PlatformSettings) -> None:
    _step("OpenBao: wrap a seed as the worker, unwrap as the signer, API refused")
    worker = OpenBaoKeyWrapper(s.openbao_addr, *s.approle("custody-worker"), key_name=s.openbao_kek)
    signer = OpenBaoKeyWrapper(s.openbao_addr, *s.approle("custody-signer"), key_name=s.openbao_kek)
    api = OpenBaoKeyWrapper(s.openbao_addr, *s.approle("custody-api"), key_name=s.openbao_kek)
    seed = secrets.token_bytes(32)
    wrapped = worker.wrap(seed)
    print(f"wrapped 32 random bytes -> {wrapped[:12]}... ({len(wrapped)} chars)")
    print(f"signer unwraps the same bytes: {'yes' if signer.unwrap(wrapped) == seed else 'NO'}")
    try:
        api.unwrap(wrapped)
        raise SystemExit("the API role could unwrap a seed: policy broken")
    except KeyAccessDenied as exc:
        print(f"API role unwrap refused: {exc.code}")


def _ethereum(s: PlatformSettings) -> None:
    _step("Ethereum (anvil): send ETH and the test token")
    node = Web3EthereumNode(s.eth_rpc_url)
    faucet = DevChainFaucet(node.web3)
    sender, receiver = InMemorySigner.generate(), InMemorySigner.generate()
    faucet.fund_eth(sender.address, 10**18)
    unit = 10**s.eth_token_decimals
    faucet.mint_token(s.eth_token_address, sender.address, 1_000 * unit)
    eth_tx = node.send_eth(sender, receiver.address, 25 * 10**16)
    tok_tx = node.send_token(sender, s.eth_token_address, receiver.address, 100 * unit)
    for tx in (eth_tx, tok_tx):
        receipt = node.wait_receipt(tx, timeout=30)
        print(f"tx {tx[:18]}... block {receipt.block_number} ok={receipt.succeeded}")
    eth = node.balance(receiver.address)
    tok = node.token_balance(s.eth_token_address, receiver.address)
    ctusd = format_units(tok, s.eth_token_decimals)
    print(f"receiver {receiver.address}: {format_units(eth, 18)} ETH, {ctusd} CTUSD")


def _bitcoin(s: PlatformSettings) -> None:
    _step("Bitcoin (btcd simnet): mine a block and read it")
    node = BtcdNode(s.btc_rpc_url, s.btc_rpc_auth(), s.btc_network)
    before = node.height()
    (mined,) = node.mine(1)
    block = node.block(node.block_hash(before + 1))
    checked = "yes" if block.block_hash == mined else "NO"
    print(
        f"height {before} -> {node.height()}; block {block.block_hash[:16]}... "
        f"{len(block.txids)} tx, hash checked locally: {checked}"
    )
    node.close()


def _sql(s: PlatformSettings) -> None:
    _step("SQL: checkpoint round trip on SQLite and PostgreSQL")
    stores: dict[str, CheckpointStore] = {
        "sqlite": SqliteCheckpointStore(s.ledger_url.removeprefix("sqlite:///")),
        "postgres": PostgresCheckpointStore(s.postgres_url),
    }
    for name, store in stores.items():
        cp = Checkpoint(
            chain="demo", height=secrets.randbelow(10**6), block_hash=secrets.token_hex(32)
        )
        store.save(cp)
        print(f"{name}: saved height {cp.height}, read back equal: {store.load('demo') == cp}")


def _books(s: PlatformSettings) -> None:
    _step("Ledger (PostgreSQL): a deposit, a reservation, a partial post")
    ledger = SqlLedger(s.postgres_url)
    ledger.register_asset(BTC)
    client = f"demo-{uuid.uuid4().hex[:6]}"
    omnibus, available, in_flight, fees = (
        "omnibus:BTC",
        f"{client}:BTC:available",
        "in-flight:BTC",
        "fees:BTC",
    )
    for account_id, kind, owner in (
        (omnibus, AccountKind.OMNIBUS, None),
        (in_flight, AccountKind.IN_FLIGHT, None),
        (fees, AccountKind.FEES, None),
        (available, AccountKind.CLIENT_AVAILABLE, client),
    ):
        ledger.open_account(Account(id=account_id, asset="BTC", kind=kind, owner=owner))
    ledger.submit(
        [
            Transfer(
                id=f"{client}-deposit",
                debit_account=omnibus,
                credit_account=available,
                asset="BTC",
                amount=50_000_000,
            )
        ]
    )
    hold = Transfer(
        id=f"{client}-withdrawal-hold",
        debit_account=available,
        credit_account=in_flight,
        asset="BTC",
        amount=20_000_000,
        pending=True,
    )
    ledger.submit([hold])
    held = ledger.balance(available)
    print(
        f"{client}: deposit 0.5 BTC, reserve 0.2 for a withdrawal -> available "
        f"{format_units(held.available, 8)}, held {format_units(held.held, 8)}"
    )
    ledger.submit(
        [
            PostPending(id=f"{client}-withdrawal-post", pending_id=hold.id, amount=19_990_000),
            Transfer(
                id=f"{client}-fee",
                debit_account=available,
                credit_account=fees,
                asset="BTC",
                amount=10_000,
            ),
        ]
    )
    after = ledger.balance(available)
    print(
        f"post 0.1999 sent + 0.0001 fee -> available {format_units(after.available, 8)}, "
        f"held {format_units(after.held, 8)}; double entry: debits == credits: "
        f"{ledger.totals('BTC')[0] == ledger.totals('BTC')[1]}"
    )

    _step("Events: outbox -> relay -> Kafka -> projection")
    bus = KafkaEventBus(s.kafka_client("admin"), client_id="custody-demo")
    bus.ensure_topics(topics.ALL)
    print(f"relayed {Relay(ledger, bus).drain()} events to {topics.EVENTS.name}")
    projection = replay(bus)
    same = projection.balance(available) == ledger.balance(available)
    print(
        f"replayed {len(projection.seen)} events from offset 0: the projection's balance of "
        f"{available} equals the ledger's: {same}"
    )

    _step("Audit: chain every event, then verify")
    writer = build_writer(s)
    writer.start()
    print(f"appended {writer.drain()} records to {topics.AUDIT.name}")
    keys = OpenBaoAuditKeys(s.openbao_addr, *s.approle("custody-auditor"))
    report = verify(
        read_audit(s.kafka_client("auditor"), topics.AUDIT.name),
        ed25519_checker(keys.public_keys()),
    )
    print(
        f"custody audit verify: {'OK' if report.ok else 'BAD'}, {report.count} records, "
        f"head {report.head_hash[:16]}..."
    )
    if not report.ok:
        raise SystemExit(f"audit chain broken: {report.first_bad}")


def run_demo() -> int:
    print("custody demo: the stack smoke scenario, then a custody scenario over the API.")
    settings = PlatformSettings.load()
    _kafka(settings)
    asyncio.run(_temporal(settings))
    _openbao(settings)
    _ethereum(settings)
    _bitcoin(settings)
    _sql(settings)
    _books(settings)
    from services.cli.scenario import run_scenario

    run_scenario(settings)
    print("\ndemo finished: the six services answered through the platform's adapters; the")
    print("client's deposits, withdrawals and trades went through the sagas, the trades settled")
    print("with the providers, and the chains, the books,")
    print("the events and the audit chain agree.")
    return 0
