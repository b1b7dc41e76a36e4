"""In-memory fakes of the ports, for unit tests of the core. Each passes its port's
contract suite in tests/contracts/, the same suite the real adapters pass."""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sagas.errors import (
    AccountConflict,
    AssetMismatch,
    CiphertextInvalid,
    IdempotencyConflict,
    InsufficientFunds,
    KeyAccessDenied,
    NotFound,
    TransferIdConflict,
    UnknownAccount,
    UnknownAsset,
)
from sagas.events import Envelope
from sagas.intents import Approval, Intent
from sagas.ledger import (
    Account,
    Asset,
    Balance,
    Command,
    PendingState,
    TransferRecord,
)
from sagas.ledger.engine import Found, execute_batch, expire_batch
from sagas.ledger.rules import Counters, replay
from sagas.operations import OperationRecord, Step
from sagas.policy import PolicyRules, StoredPolicy
from sagas.ports import Checkpoint, OutboxItem, TopicSpec
from sagas.trade import TradeRecord


class FakeEventBus:
    def __init__(self) -> None:
        self.topics: dict[str, list[Envelope]] = {}
        self._offsets: dict[tuple[str, str], int] = defaultdict(int)

    def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        for spec in specs:
            self.topics.setdefault(spec.name, [])

    def publish(self, topic: str, event: Envelope) -> None:
        self.publish_all([(topic, event)])

    def publish_all(self, items: Sequence[tuple[str, Envelope]]) -> None:
        for topic, _ in items:
            if topic not in self.topics:
                raise KeyError(f"unknown topic {topic}")
        for topic, event in items:
            self.topics[topic].append(event)

    def read(self, topic: str, group: str, max_events: int, timeout: float) -> list[Envelope]:
        start = self._offsets[(topic, group)]
        batch = self.topics.get(topic, [])[start : start + max_events]
        self._offsets[(topic, group)] = start + len(batch)
        return batch


class FakeKeyWrapper:
    """Ciphertexts are random handles into a vault shared by every role's instance."""

    def __init__(self, vault: dict[str, bytes], may_unwrap: bool) -> None:
        self._vault = vault
        self._may_unwrap = may_unwrap

    def wrap(self, plaintext: bytes) -> str:
        handle = f"fake:v1:{secrets.token_urlsafe(24)}"
        self._vault[handle] = bytes(plaintext)
        return handle

    def unwrap(self, ciphertext: str, operation: str | None = None) -> bytes:
        if not self._may_unwrap:
            raise KeyAccessDenied("fake: this role may not unwrap")
        try:
            return self._vault[ciphertext]
        except KeyError:
            raise CiphertextInvalid("fake: unknown ciphertext") from None


class FakeCheckpointStore:
    def __init__(self) -> None:
        self._rows: dict[str, Checkpoint] = {}

    def save(self, checkpoint: Checkpoint) -> None:
        if checkpoint.height < 0:
            raise ValueError("height must be >= 0")
        self._rows[checkpoint.chain] = checkpoint

    def load(self, chain: str) -> Checkpoint | None:
        return self._rows.get(chain)


class InMemoryLedger:
    """The Ledger port in memory, for unit tests. A batch works on copies of the state
    and swaps them in only when every command succeeded (all or none)."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._assets: dict[str, Asset] = {}
        self._accounts: dict[str, tuple[Account, Counters]] = {}
        self._records: dict[str, tuple[TransferRecord, str]] = {}
        self._states: dict[str, PendingState] = {}
        self._log: list[TransferRecord] = []
        self._outbox: list[OutboxItem] = []
        self._published: set[int] = set()

    def unpublished(self, limit: int) -> list[OutboxItem]:
        with self._lock:
            return [i for i in self._outbox if i.position not in self._published][:limit]

    def mark_published(self, positions: Sequence[int]) -> None:
        with self._lock:
            self._published.update(positions)

    def register_asset(self, asset: Asset) -> None:
        with self._lock:
            known = self._assets.setdefault(asset.code, asset)
            if known != asset:
                raise AssetMismatch(f"{asset.code} has {known.decimals} decimals")

    def open_account(self, account: Account) -> None:
        with self._lock:
            if account.asset not in self._assets:
                raise UnknownAsset(account.asset)
            known = self._accounts.setdefault(account.id, (account, Counters()))[0]
            if known != account:
                raise AccountConflict(account.id)

    def submit(self, commands: Sequence[Command]) -> list[TransferRecord]:
        with self._lock:
            tx = _InMemoryTx(self)
            results = execute_batch(tx, commands, self._clock())
            tx.commit()
            return results

    def expire_pending(self) -> list[TransferRecord]:
        with self._lock:
            now = self._clock()
            tx = _InMemoryTx(self)
            due = [
                rec
                for rec, _ in self._records.values()
                if rec.kind == "pending"
                and self._states[rec.id] == "pending"
                and rec.expires_at is not None
                and rec.expires_at <= now
            ]
            done = expire_batch(tx, [r.id for r in sorted(due, key=lambda r: r.seq)], now)
            tx.commit()
            return done

    def _account(self, account_id: str) -> tuple[Account, Counters]:
        if account_id not in self._accounts:
            raise UnknownAccount(account_id)
        return self._accounts[account_id]

    def balance(self, account_id: str, as_of_seq: int | None = None) -> Balance:
        with self._lock:
            account, counters = self._account(account_id)
            if as_of_seq is None:
                return Balance(account_id=account_id, asset=account.asset, **vars(counters))
            return replay(account_id, account.asset, (r for r in self._log if r.seq <= as_of_seq))

    def history(
        self, account_id: str, after_seq: int = 0, limit: int = 100
    ) -> list[TransferRecord]:
        with self._lock:
            self._account(account_id)
            mine = [
                r
                for r in self._log
                if r.seq > after_seq and account_id in (r.debit_account, r.credit_account)
            ]
            return mine[:limit]

    def totals(self, asset: str) -> tuple[int, int]:
        with self._lock:
            rows = [c for a, c in self._accounts.values() if a.asset == asset]
            return sum(c.debits_posted for c in rows), sum(c.credits_posted for c in rows)


class _InMemoryTx:
    def __init__(self, ledger: InMemoryLedger) -> None:
        self._ledger = ledger
        self._accounts = dict(ledger._accounts)
        self._records = dict(ledger._records)
        self._states = dict(ledger._states)
        self._log = list(ledger._log)
        self._outbox = list(ledger._outbox)

    def find(self, ids: Sequence[str]) -> dict[str, Found]:
        return {i: Found(*self._records[i], self._states.get(i)) for i in ids if i in self._records}

    def lock_accounts(self, ids: Sequence[str]) -> dict[str, tuple[Account, Counters]]:
        return {i: self._accounts[i] for i in ids if i in self._accounts}

    def write(
        self,
        records: Sequence[tuple[TransferRecord, str]],
        counters: Mapping[str, Counters],
        resolved: Mapping[str, PendingState],
    ) -> list[int]:
        seqs = []
        for record, body in records:
            if record.id in self._records:  # the fake's unique constraint
                raise TransferIdConflict(f"{record.id} exists")
            stored = record.model_copy(update={"seq": len(self._log) + 1})
            self._records[record.id] = (stored, body)
            self._log.append(stored)
            if stored.kind == "pending":
                self._states[stored.id] = "pending"
            seqs.append(stored.seq)
        for account_id, after in counters.items():
            account = self._accounts[account_id][0]
            if not after.non_negative() or (
                account.kind.no_overdraft and not after.covers_debits()
            ):
                raise InsufficientFunds(account_id)  # the fake's stand-in for a CHECK constraint
            self._accounts[account_id] = (account, after)
        self._states.update(resolved)
        return seqs

    def emit(self, topic: str, events: Sequence[Envelope]) -> None:
        for event in events:
            self._outbox.append(OutboxItem(len(self._outbox) + 1, topic, event))

    def commit(self) -> None:
        led = self._ledger
        led._accounts, led._records, led._states, led._log, led._outbox = (
            self._accounts,
            self._records,
            self._states,
            self._log,
            self._outbox,
        )


class FakeAuditKeys:
    """AuditKeys in process: data keys wrapped under a local master key, an Ed25519
    chain key. `may_unwrap` plays the auditor role, `may_sign` the writer's."""

    def __init__(self, may_unwrap: bool = True, may_sign: bool = True) -> None:
        self._master = AESGCM(AESGCM.generate_key(bit_length=256))
        self._chain = Ed25519PrivateKey.generate()
        self._may_unwrap = may_unwrap
        self._may_sign = may_sign

    def new_data_key(self) -> tuple[bytes, str]:
        key, nonce = secrets.token_bytes(32), secrets.token_bytes(12)
        wrapped = base64.b64encode(nonce + self._master.encrypt(nonce, key, None)).decode()
        return key, f"fake:v1:{wrapped}"

    def unwrap_data_key(self, wrapped: str) -> bytes:
        if not self._may_unwrap:
            raise KeyAccessDenied("fake: this role may not unwrap audit data keys")
        raw = base64.b64decode(wrapped.removeprefix("fake:v1:"))
        try:
            return self._master.decrypt(raw[:12], raw[12:], None)
        except Exception:
            raise CiphertextInvalid("fake: not a data key of this chain") from None

    def sign(self, digest: bytes) -> str:
        if not self._may_sign:
            raise KeyAccessDenied("fake: this role may not sign")
        return "vault:v1:" + base64.b64encode(self._chain.sign(digest)).decode()

    def public_keys(self) -> dict[int, bytes]:
        return {1: self._chain.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)}


class FakePolicyStore:
    def __init__(self) -> None:
        self._versions: dict[tuple[str, str], list[StoredPolicy]] = defaultdict(list)
        self._lock = threading.Lock()

    def put(self, rules: PolicyRules, created_by: str) -> StoredPolicy:
        with self._lock:
            versions = self._versions[(rules.client_id, rules.asset)]
            stored = StoredPolicy(
                rules=rules,
                version=len(versions) + 1,
                created_by=created_by,
                created_at=datetime.now(UTC),
            )
            versions.append(stored)
            return stored

    def current(self, client_id: str, asset: str) -> StoredPolicy | None:
        versions = self._versions.get((client_id, asset))
        return versions[-1] if versions else None

    def version(self, client_id: str, asset: str, version: int) -> StoredPolicy | None:
        versions = self._versions.get((client_id, asset), [])
        return versions[version - 1] if 0 < version <= len(versions) else None


class FakeNonceStore:
    """sagas.intents.NonceStore in memory; forgets an entry only after its keep_until."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._seen: dict[tuple[str, str], datetime] = {}
        self._clock = clock
        self._lock = threading.Lock()

    def claim(self, key_id: str, nonce: str, keep_until: datetime) -> bool:
        with self._lock:
            now = self._clock()
            self._seen = {k: until for k, until in self._seen.items() if until >= now}
            if (key_id, nonce) in self._seen:
                return False
            self._seen[(key_id, nonce)] = keep_until
            return True


class FakeIntentStore:
    """sagas.ports.IntentStore in memory."""

    def __init__(self) -> None:
        self._intents: dict[tuple[str, str], tuple[Intent, int]] = {}
        self._approvals: dict[str, dict[str, Approval]] = {}
        self._lock = threading.Lock()

    def put_intent(self, intent: Intent, required: int) -> bool:
        with self._lock:
            stored = self._intents.get((intent.operation_id, intent.kind))
            if stored is not None:
                if stored[0].hash() != intent.hash():
                    raise IdempotencyConflict(f"{intent.operation_id} has another intent")
                return False
            self._intents[(intent.operation_id, intent.kind)] = (intent, required)
            return True

    def intent(self, operation_id: str, kind: str = "withdrawal") -> tuple[Intent, int] | None:
        return self._intents.get((operation_id, kind))

    def add_approval(self, approval: Approval, operator: str) -> bool:
        with self._lock:
            kept = self._approvals.setdefault(approval.intent_hash, {})
            slot = f"{approval.key_id}/{approval.signature}"
            if slot in kept:
                return False
            kept[slot] = approval
            return True

    def approvals(self, intent_hash: str) -> list[Approval]:
        return list(self._approvals.get(intent_hash, {}).values())


class FakeOperationStore:
    """sagas.ports.OperationStore in memory: operations, their steps (each recorded once)
    and the events each write emits (`outbox`, in order, as the SQL store's outbox)."""

    def __init__(self) -> None:
        self._ops: dict[str, OperationRecord] = {}
        self._steps: dict[str, list[Step]] = defaultdict(list)
        self._clients: dict[str, str] = {}
        self.outbox: list[tuple[str, Envelope]] = []
        self._lock = threading.Lock()
        self._keyed: dict[str, threading.Lock] = {}

    @contextlib.contextmanager
    def serialised(self, key: str) -> Iterator[None]:
        with self._lock:
            lock = self._keyed.setdefault(key, threading.Lock())
        with lock:
            yield

    def create(
        self,
        record: OperationRecord,
        events: Sequence[tuple[str, Envelope]] = (),
        detail: dict[str, Any] | None = None,
    ) -> tuple[OperationRecord, bool]:
        with self._lock:
            existing = self._ops.get(record.id)
            if existing is not None:
                if existing.request_hash != record.request_hash:
                    raise IdempotencyConflict(f"{record.id} was used for another request")
                return existing, False
            self._ops[record.id] = record
            self._steps[record.id].append(
                Step(step=record.state, at=record.created_at, detail=_json(detail))
            )
            self.outbox.extend(events)
            return record, True

    def get(self, operation_id: str) -> OperationRecord | None:
        return self._ops.get(operation_id)

    def for_client(
        self, client_id: str, kind: str = "withdrawal", limit: int = 100
    ) -> list[OperationRecord]:
        found = [o for o in self._ops.values() if o.client_id == client_id and o.kind == kind]
        return sorted(found, key=lambda o: o.created_at, reverse=True)[:limit]

    def of_kind(self, kind: str, states: Sequence[str]) -> list[OperationRecord]:
        found = [o for o in self._ops.values() if o.kind == kind and o.state in states]
        return sorted(found, key=lambda o: (o.created_at, o.id))

    def recent_withdrawals(
        self, client_id: str, asset: str, since: datetime, exclude: str
    ) -> list[tuple[datetime, int]]:
        return [
            (o.created_at, o.amount)
            for o in self._ops.values()
            if o.kind == "withdrawal"
            and (o.client_id, o.asset) == (client_id, asset)
            and o.created_at > since
            and o.id != exclude
            and o.state not in ("rejected", "expired", "failed")
        ]

    def advance(
        self,
        operation_id: str,
        step: str,
        events: Sequence[tuple[str, Envelope]] = (),
        detail: dict[str, Any] | None = None,
        state: str | None = None,
        **fields: Any,
    ) -> bool:
        with self._lock:
            current = self._ops[operation_id]  # KeyError, as SQL's foreign key refuses it
            steps = self._steps[operation_id]
            if any(s.step == step for s in steps):
                return False
            now = datetime.now(UTC)
            changes = {**fields, **({"state": state} if state is not None else {})}
            # Validated as SQL's columns would take it: a misspelt or mistyped field fails
            # here too; a number as its decimal text is a number, as the column reads it.
            updated = OperationRecord.model_validate(
                {**current.model_dump(), **changes, "updated_at": now}
            )
            extra = set(changes) - set(OperationRecord.model_fields)
            if extra:
                raise ValueError(f"no such operation fields: {sorted(extra)}")
            steps.append(Step(step=step, at=now, detail=_json(detail)))
            self._ops[operation_id] = updated
            self.outbox.extend(events)
            return True

    def timeline(self, operation_id: str) -> list[Step]:
        return sorted(self._steps.get(operation_id, []), key=lambda s: (s.at, s.step))

    def create_client(self, client_id: str, name: str, created_by: str) -> tuple[str, bool]:
        with self._lock:
            existing = self._clients.get(client_id)
            if existing is not None:
                if existing != name:
                    raise IdempotencyConflict(f"client {client_id} exists with another name")
                return existing, False
            self._clients[client_id] = name
            return name, True

    def client(self, client_id: str) -> str | None:
        return self._clients.get(client_id)


def _json(detail: dict[str, Any] | None) -> dict[str, Any]:
    """A step's detail as the SQL store returns it: through JSON, keys sorted."""
    return dict(json.loads(json.dumps(detail or {}, sort_keys=True)))


class FakeTradeStore:
    """sagas.ports.TradeStore in memory; clients (for their bank accounts) are those of
    the operation store it is given, as the SQL stores share the clients table."""

    def __init__(self, operations: FakeOperationStore) -> None:
        self._ops = operations
        self._trades: dict[str, TradeRecord] = {}
        self._accounts: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def record(self, trade: TradeRecord) -> TradeRecord:
        with self._lock:
            if trade.operation_id not in self._trades and self._ops.get(trade.operation_id) is None:
                raise NotFound(f"operation {trade.operation_id}")  # a trade is an operation's
            return self._trades.setdefault(trade.operation_id, trade)

    def get(self, operation_id: str) -> TradeRecord | None:
        return self._trades.get(operation_id)

    def _ordered(self, keep: Callable[[TradeRecord], bool]) -> list[TradeRecord]:
        found = [t for t in self._trades.values() if keep(t)]
        return sorted(found, key=lambda t: (t.executed_at, t.operation_id))

    def unsettled(self, counterparty: str | None = None) -> list[TradeRecord]:
        return self._ordered(
            lambda t: t.settlement_id is None and counterparty in (None, t.counterparty)
        )

    def assign(self, settlement_id: str, operation_ids: Sequence[str]) -> list[str]:
        with self._lock:
            taken = []
            for op_id in operation_ids:
                trade = self._trades.get(op_id)
                if trade is not None and trade.settlement_id in (None, settlement_id):
                    self._trades[op_id] = trade.model_copy(update={"settlement_id": settlement_id})
                    taken.append(op_id)
            return taken

    def for_settlement(self, settlement_id: str) -> list[TradeRecord]:
        return self._ordered(lambda t: t.settlement_id == settlement_id)

    def release(self, settlement_id: str, counterparty: str) -> list[str]:
        with self._lock:
            freed = [
                op_id
                for op_id, t in self._trades.items()
                if (t.settlement_id, t.counterparty) == (settlement_id, counterparty)
            ]
            for op_id in freed:
                self._trades[op_id] = self._trades[op_id].model_copy(update={"settlement_id": None})
            return sorted(freed)

    def set_bank_account(self, client_id: str, iban: str, bic: str) -> None:
        if self._ops.client(client_id) is None:
            raise NotFound(f"client {client_id}")
        self._accounts[client_id] = (iban, bic)

    def bank_account(self, client_id: str) -> tuple[str, str] | None:
        return self._accounts.get(client_id)
