"""The ports: what the core needs from the outside world, as structural Protocols.

Each implementation (adapters/ and the fakes in tests/) passes the port's
contract suite in tests/contracts/. Errors are from sagas.errors: the docstring
of each method says which, and whether they are transient.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from sagas.banking import BankBalance, BankHold, BankPayment, StatementEntry
from sagas.chainwatch import BlockScan
from sagas.deposit import DepositState
from sagas.events import Envelope
from sagas.intents import Approval, Intent
from sagas.keys import AddressAssignment, Chain, WalletRecord
from sagas.ledger import Account, Asset, Balance, Command, TransferRecord
from sagas.liquidity import (
    Fill,
    Quote,
    SettlementInstructions,
    SettlementLeg,
    SettlementState,
    Side,
)
from sagas.operations import OperationRecord, Step
from sagas.policy import PolicyRules, StoredPolicy
from sagas.signing import SignCosmosRequest, UnsignedBtcTransaction
from sagas.staking import DelegationView, TxOutcome, ValidatorState
from sagas.trade import TradeRecord
from sagas.withdrawal import ChainStatus


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


@runtime_checkable
class EventBus(Protocol):
    def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create missing topics as specified; existing ones are left alone.
        DependencyUnavailable (transient) if the backbone does not answer."""

    def publish(self, topic: str, event: Envelope) -> None:
        """Publish durably (acks=all, idempotent), keyed by event.subject; returns once stored.
        DependencyUnavailable (transient) if not acknowledged in time."""

    def publish_all(self, items: Sequence[tuple[str, Envelope]]) -> None:
        """Publish (topic, event) pairs, each keyed by its subject, and return once all are
        stored; per key, in the given order. DependencyUnavailable (transient) otherwise."""

    def read(self, topic: str, group: str, max_events: int, timeout: float) -> list[Envelope]:
        """Read up to max_events for consumer group `group` from its committed position
        (the topic's start for a new group), committing what it returns."""


@runtime_checkable
class KeyWrapper(Protocol):
    """Envelope encryption of secrets (seeds) under a key-encryption key we never see."""

    def wrap(self, plaintext: bytes) -> str:
        """Encrypt under the KEK; returns an opaque ciphertext safe to store.
        KeyAccessDenied (permanent) if this role may not; DependencyUnavailable (transient)."""

    def unwrap(self, ciphertext: str, operation: str | None = None) -> bytes:
        """Decrypt a ciphertext from wrap(). Only the signer's role may. `operation` (the
        platform's operation id) is recorded with the request in the key service's audit.
        KeyAccessDenied (permanent) if this role may not; CiphertextInvalid (permanent) if
        the ciphertext is not one wrap() issued; DependencyUnavailable (transient)."""


@dataclass(frozen=True)
class Checkpoint:
    chain: str
    height: int
    block_hash: str


@runtime_checkable
class CheckpointStore(Protocol):
    """Where a chain follower resumes: the last block it fully processed, per chain."""

    def save(self, checkpoint: Checkpoint) -> None:
        """Record the checkpoint for its chain, replacing the previous one atomically."""

    def load(self, chain: str) -> Checkpoint | None:
        """The last saved checkpoint for `chain`, or None if it never saved one."""


@dataclass(frozen=True)
class BlockInfo:
    height: int
    block_hash: str
    previous_hash: str
    txids: tuple[str, ...]


@runtime_checkable
class BitcoinNode(Protocol):
    def height(self) -> int:
        """The best chain's height. DependencyUnavailable (transient)."""

    def block_hash(self, height: int) -> str:
        """The hash of the best chain's block at `height` (hex, RPC byte order)."""

    def block(self, block_hash: str) -> BlockInfo:
        """The block, parsed and its hash checked locally against `block_hash`."""


@dataclass(frozen=True)
class TxReceipt:
    tx_hash: str
    block_number: int
    succeeded: bool
    gas_used: int
    effective_gas_price: int


@runtime_checkable
class TransactionSigner(Protocol):
    """Signs EVM transactions for one address; the key never leaves the implementation."""

    @property
    def address(self) -> str: ...

    def sign_transaction(self, tx: dict[str, object]) -> bytes:
        """The raw signed transaction, ready to broadcast."""


@runtime_checkable
class EthereumNode(Protocol):
    def chain_id(self) -> int:
        """The node's chain id. DependencyUnavailable (transient)."""

    def balance(self, address: str) -> int:
        """ETH balance in wei at the latest block."""

    def token_balance(self, token: str, address: str) -> int:
        """ERC-20 balance in the token's base unit at the latest block."""

    def token_decimals(self, token: str) -> int:
        """The ERC-20 token's decimals (its base unit is 10**-decimals of a token)."""

    def send_eth(self, signer: TransactionSigner, to: str, wei: int) -> str:
        """Build (EIP-1559), sign and broadcast an ETH transfer; returns the tx hash.
        ChainRejected (permanent) if the node refuses it."""

    def send_token(self, signer: TransactionSigner, token: str, to: str, amount: int) -> str:
        """Build, sign and broadcast an ERC-20 transfer; returns the tx hash."""

    def wait_receipt(self, tx_hash: str, timeout: float) -> TxReceipt:
        """The mined receipt. DependencyUnavailable (transient) if not mined in time."""


@runtime_checkable
class Ledger(Protocol):
    """The custody ledger: double-entry, per asset, two-phase, idempotent by transfer id."""

    def register_asset(self, asset: Asset) -> None:
        """Make an asset known (idempotent). AssetMismatch if it exists with other decimals."""

    def open_account(self, account: Account) -> None:
        """Open an account (idempotent). UnknownAsset; AccountConflict if the id exists
        with another asset, kind or owner."""

    def submit(self, commands: Sequence[Command]) -> list[TransferRecord]:
        """Apply the commands as one linked batch: all or none. A command whose id was
        applied before returns its first record and changes nothing. Errors (all
        permanent): InsufficientFunds, UnknownAccount, TransferIdConflict, AssetMismatch,
        PendingNotFound, PendingExpired, PostExceedsPending, InvalidAmount, SameAccount."""

    def expire_pending(self) -> list[TransferRecord]:
        """Void every pending transfer whose expiry has passed; returns the expiries made."""

    def balance(self, account_id: str, as_of_seq: int | None = None) -> Balance:
        """Counters of an account now, or after the transfer with sequence `as_of_seq`.
        UnknownAccount."""

    def history(
        self, account_id: str, after_seq: int = 0, limit: int = 100
    ) -> list[TransferRecord]:
        """The account's transfers in commit order, after `after_seq`. UnknownAccount."""

    def totals(self, asset: str) -> tuple[int, int]:
        """(sum of posted debits, sum of posted credits) over every account of the asset;
        double entry means the two are always equal."""


@dataclass(frozen=True)
class OutboxItem:
    position: int
    topic: str
    event: Envelope


@runtime_checkable
class Outbox(Protocol):
    """Events committed with the ledger change that caused them, waiting for the relay."""

    def unpublished(self, limit: int) -> list[OutboxItem]:
        """Up to `limit` events not yet marked published, oldest first."""

    def mark_published(self, positions: Sequence[int]) -> None:
        """Record that these events are on Kafka (idempotent)."""


@runtime_checkable
class AuditKeys(Protocol):
    """Keys of the audit chain, held by the key service: data keys and the chain key."""

    def new_data_key(self) -> tuple[bytes, str]:
        """A fresh AES-256 key: (plaintext, wrapped). KeyAccessDenied if this role may not."""

    def unwrap_data_key(self, wrapped: str) -> bytes:
        """The plaintext of a wrapped data key: authorised auditors only (KeyAccessDenied)."""

    def sign(self, digest: bytes) -> str:
        """Sign a chain head with the chain key; returns 'vault:v<N>:<base64 signature>'."""

    def public_keys(self) -> dict[int, bytes]:
        """The chain key's raw Ed25519 public keys by version, for offline verification."""


@runtime_checkable
class KeyDerivation(Protocol):
    """HD derivation (BIP39/32/44/84) by a well-kept library; no curve math of our own."""

    btc_network: str
    cosmos_prefix: str  # the bech32 prefix of Cosmos account addresses

    def new_mnemonic(self) -> str:
        """24 BIP39 words from the OS CSPRNG."""

    def seed(self, mnemonic: str, passphrase: str = "") -> bytes:
        """The 64-byte BIP39 seed. ValueError for an invalid mnemonic."""

    def account_xpub(self, seed: bytes, chain: Chain, account: int = 0) -> str:
        """The account-level extended public key."""

    def address(self, xpub: str, chain: Chain, change: int, index: int) -> str:
        """The address below an account xpub (no secret needed)."""

    def public_key(self, xpub: str, chain: Chain, change: int, index: int) -> bytes:
        """The compressed public key below an account xpub."""

    def private_key(
        self, seed: bytes, chain: Chain, change: int, index: int, account: int = 0
    ) -> bytes:
        """The raw private key at a path: for the signer only."""


@runtime_checkable
class KeyStore(Protocol):
    """Wallets (wrapped seeds, xpubs) and the address -> client account mapping."""

    def save_wallet(self, record: WalletRecord) -> WalletRecord:
        """Store a new wallet; if the id exists, the stored one wins and is returned."""

    def wallet(self, wallet_id: str) -> WalletRecord | None: ...

    def assign(
        self,
        wallet_id: str,
        chain: Chain,
        account_id: str,
        owner: str | None,
        asset: str,
        derive: Callable[[int], str],
        change: int = 0,
    ) -> AddressAssignment:
        """The account's address: the one it already has, else the address at the wallet's
        next unused index on the external (0) or internal/change (1) chain (atomic; an
        address is never given to two accounts).
        AccountConflict if the account has an address for another chain or asset."""

    def lookup(self, address: str) -> AddressAssignment | None:
        """Which client account an address belongs to, if it is one of ours."""


@runtime_checkable
class ChainReader(Protocol):
    """A chain as the watcher needs it: heights, hashes, deposits in a block."""

    chain: str

    def head(self) -> int:
        """The best chain's height. DependencyUnavailable (transient)."""

    def block_hash(self, height: int) -> str:
        """The best chain's block hash at a height (lower-case hex, 0x-prefixed for EVM)."""

    def scan(self, height: int, is_ours: Callable[[str], bool]) -> BlockScan:
        """The block at `height`: its hash, transfers in it to addresses for which is_ours
        is true, and its transaction ids."""


@runtime_checkable
class BitcoinSigner(Protocol):
    def sign_btc_transaction(
        self, operation: str, wallet_id: str, tx: UnsignedBtcTransaction
    ) -> bytes:
        """The transaction signed (every input, witnesses attached, serialized); the
        signer computes every sighash itself. KeyAccessDenied (permanent) if it may not
        sign this transaction for this operation."""


@runtime_checkable
class EvmKeySigner(Protocol):
    def sign_evm_transaction(
        self, operation: str, wallet_id: str, index: int, tx: dict[str, object]
    ) -> bytes:
        """The raw signed transaction for the wallet's key m/44'/60'/0'/0/index."""


@runtime_checkable
class Delegations(Protocol):
    """A client's delegations on the proof-of-stake chain (decision 0028), from the
    client's own delegator address, each transaction signed by the signer (which checks
    it against the operation's intent). One transaction per operation, for ever: a retry
    broadcasts the same signed bytes again."""

    def delegate(
        self, operation_id: str, delegator: str, validator: str, amount: int, fee: int
    ) -> str:
        """Broadcast the operation's MsgDelegate; its transaction hash. KeyAccessDenied
        or ChainRejected (permanent) if it cannot be; DependencyUnavailable (transient)."""

    def undelegate(
        self, operation_id: str, delegator: str, validator: str, amount: int, fee: int
    ) -> str:
        """Broadcast the operation's MsgUndelegate; its transaction hash."""

    def redelegate(
        self,
        operation_id: str,
        delegator: str,
        source: str,
        validator: str,
        amount: int,
        fee: int,
    ) -> str:
        """Broadcast the operation's MsgBeginRedelegate of `amount` from `source` to
        `validator` (the shares move at once; its outcome's completion time is when the
        chain's redelegation entry ends); its transaction hash."""

    def outcome(self, operation_id: str) -> TxOutcome:
        """The chain's verdict on the operation's transaction: pending (not in a block
        yet; rebroadcast), succeeded (with its height, fee and, for an undelegation, the
        completion time of the unbonding it started) or failed (in a block with a
        non-zero code: the fee was paid, nothing else happened)."""

    def unbonding_balance(self, delegator: str, validator: str, height: int) -> int | None:
        """What the unbonding started at `height` still holds (less than it started
        with if the validator was slashed since); None once the chain released it."""

    def delegation(
        self, delegator: str, validator: str, height: int | None = None
    ) -> DelegationView | None:
        """The delegation at `height` (else the latest committed block), with its
        validator's exchange rate read at the same height; None if the chain has no such
        delegation there. Its balance is less than was delegated once the validator was
        slashed (the rate fell); its shares change only by the delegator's transactions."""

    def validator_state(self, validator: str) -> ValidatorState:
        """The validator as the chain reports it now (jailed, status)."""

    def pending_rewards(self, delegator: str, validator: str) -> int:
        """The delegation's outstanding rewards in whole minor units (what a claim pays
        at least); 0 without a delegation."""

    def claim_rewards(
        self, operation_id: str, delegator: str, validators: Sequence[str], fee: int
    ) -> str:
        """Broadcast the operation's claim of the delegator's rewards from `validators`
        (one transaction); its hash. Its outcome's `rewards` is what the chain paid.
        Errors as `delegate`'s."""


@runtime_checkable
class CosmosKeySigner(Protocol):
    def sign_cosmos_transaction(self, request: SignCosmosRequest) -> bytes:
        """The broadcastable TxRaw for the wallet's key m/44'/118'/0'/0/index: the
        request's body and auth info with the signature over their SignDoc.
        KeyAccessDenied (permanent) if it may not sign this transaction."""


@runtime_checkable
class PolicyStore(Protocol):
    """Policies per client and asset; every change is a new version, none is overwritten."""

    def put(self, rules: PolicyRules, created_by: str) -> StoredPolicy:
        """Store rules as the next version (1 for the first)."""

    def current(self, client_id: str, asset: str) -> StoredPolicy | None:
        """The latest version, or None if the client has no policy for the asset."""

    def version(self, client_id: str, asset: str, version: int) -> StoredPolicy | None:
        """A given version (what an earlier decision was taken under)."""


@runtime_checkable
class OperationStore(Protocol):
    """Operations (withdrawals, deposits), their timelines, and the clients they belong to."""

    def create(
        self,
        record: OperationRecord,
        events: Sequence[tuple[str, Envelope]] = (),
        detail: dict[str, Any] | None = None,
    ) -> tuple[OperationRecord, bool]:
        """Store a new operation with its first step and events, or return the stored one
        (and False) for a repeat. IdempotencyConflict if the id has another request."""

    def serialised(self, key: str) -> AbstractContextManager[None]:
        """Held by one caller at a time, in every process of the platform (a check of
        what is left of a position, then the operation that takes from it, under one
        lock). DependencyUnavailable if it is not had within a few seconds."""

    def get(self, operation_id: str) -> OperationRecord | None: ...

    def for_client(
        self, client_id: str, kind: str = "withdrawal", limit: int = 100
    ) -> list[OperationRecord]: ...

    def of_kind(self, kind: str, states: Sequence[str]) -> list[OperationRecord]:
        """Every operation of `kind` in one of `states`, oldest first."""

    def recent_withdrawals(
        self, client_id: str, asset: str, since: datetime, exclude: str
    ) -> list[tuple[datetime, int]]:
        """The client's withdrawals of the asset since `since`, not refused, but `exclude`."""

    def advance(
        self,
        operation_id: str,
        step: str,
        events: Sequence[tuple[str, Envelope]] = (),
        detail: dict[str, Any] | None = None,
        state: str | None = None,
        **fields: Any,
    ) -> bool:
        """Record a step once, with its events and the operation's new state and fields;
        False if recorded before (nothing changes)."""

    def timeline(self, operation_id: str) -> list[Step]: ...

    def create_client(self, client_id: str, name: str, created_by: str) -> tuple[str, bool]: ...

    def client(self, client_id: str) -> str | None: ...


@runtime_checkable
class IntentStore(Protocol):
    """Intents and the approvals over them, as they were handed in. Untrusted storage:
    whoever reads an approval to act on it verifies its signature first."""

    def put_intent(self, intent: Intent, required: int) -> bool:
        """Store an operation's intent (one per operation and kind) and how many approvals
        the policy asked for; False if it was stored before (the same intent).
        IdempotencyConflict if the operation has another intent of this kind."""

    def intent(self, operation_id: str, kind: str = "withdrawal") -> tuple[Intent, int] | None:
        """The operation's intent of this kind and the approvals it needs."""

    def add_approval(self, approval: Approval, operator: str) -> bool:
        """Keep an approval once (the same signature again: False). Several under one
        key are kept side by side: a bad one filed first never hides the good one."""

    def approvals(self, intent_hash: str) -> list[Approval]:
        """Every approval kept for the intent (in no particular order)."""


@runtime_checkable
class Payouts(Protocol):
    """Sending a withdrawal on its chain: build, sign (through the signer), record, broadcast;
    all idempotent by operation id."""

    def send(
        self,
        operation_id: str,
        asset: str,
        destination: str,
        amount: int,
        source: str | None = None,
        fee: int = 0,
    ) -> str:
        """The transaction id (recorded before it is broadcast; a repeat sends the same one).
        ChainRejected (permanent) if the chain refuses it; KeyAccessDenied if the signer does.
        `source` and `fee`: a payment from the client's own address, which pays that fee
        (ATOM); else None and 0 (the platform's wallet pays, and the fee is its own)."""

    def status(self, operation_id: str, asset: str) -> ChainStatus:
        """Where the operation's transaction is: pending, mined, final (or reverted), with
        its fee once mined."""

    def rebroadcast(self, operation_id: str) -> None:
        """Send the operation's recorded transaction again (harmless if the node has it)."""

    def bump(
        self, operation_id: str, asset: str, destination: str, amount: int, percent: int
    ) -> str:
        """Replace the pending transaction with one paying `percent`% of its fee."""


@runtime_checkable
class Screening(Protocol):
    """Screens the source of a deposit (sanctions, stolen funds)."""

    def sources(self, chain: str, tx_hash: str) -> list[str]:
        """The addresses that funded the transaction."""

    def check(self, chain: str, addresses: Sequence[str]) -> str | None:
        """None if all are clean, else the reason the first hit was refused."""


@runtime_checkable
class DepositObservations(Protocol):
    """The chain watcher's view of one output, over every block it was seen in."""

    def state(self, chain: str, tx_hash: str, position: str) -> DepositState:
        """final if any observation is final; reorged if every one was reorged; seen if
        one is waiting for depth; unknown if the watcher has none."""

    def final(self, chain: str, tx_hash: str, position: str) -> tuple[str, str, str, int] | None:
        """(address, account id, asset, amount) as the watcher recorded the final
        observation, or None if none is final: what a credit must use, never an event's
        word."""


@runtime_checkable
class CoreBanking(Protocol):
    """Fiat at the bank. Every instruction carries an idempotency key: a repeat with the
    same key returns the first answer and moves no more money. Errors: IbanInvalid,
    BankAccountUnknown, BankInsufficientFunds, HoldNotActive, BankRefused (permanent);
    DependencyUnavailable (transient: the bank did not answer, or answered 5xx, after the
    adapter's own retries; the instruction may or may not have been done, so retry it
    with the same key)."""

    def hold(
        self,
        key: str,
        iban: str,
        amount: int,
        currency: str,
        ttl_seconds: int,
        end_to_end_id: str,
        remittance_info: str = "",
    ) -> BankHold:
        """Reserve `amount` on the account until captured, released or expired."""

    def capture(
        self,
        key: str,
        hold_id: str,
        amount: int,
        creditor_iban: str,
        end_to_end_id: str,
        remittance_info: str = "",
    ) -> BankPayment:
        """Pay `amount` (at most the hold) from the held account to the creditor; the rest
        of the hold is released (`released` in the answer)."""

    def release(self, key: str, hold_id: str) -> BankHold:
        """Give a hold back (harmless if it already expired). HoldNotActive if captured."""

    def transfer(
        self,
        key: str,
        debtor_iban: str,
        creditor_iban: str,
        amount: int,
        currency: str,
        end_to_end_id: str,
        remittance_info: str = "",
    ) -> BankPayment:
        """A credit transfer between two accounts at the bank."""

    def credit(
        self,
        key: str,
        creditor_iban: str,
        amount: int,
        currency: str,
        end_to_end_id: str,
        remittance_info: str = "",
    ) -> BankPayment:
        """Pay a client from the platform's own account at the bank."""

    def payment(self, key: str) -> BankPayment:
        """What became of the payment instruction (transfer, credit, capture) sent under
        `key`, without sending anything: the payment if it was made; the bank's refusal,
        raised as its error (BankInsufficientFunds, BankAccountUnknown, BankRefused: the
        bank remembers it, so that key will never pay); PaymentUnknown (permanent) if the
        bank never took an instruction under that key, so sending it is safe."""

    def get_hold(self, hold_id: str) -> BankHold:
        """A hold as the bank has it now (expired holds say so)."""

    def balance(self, iban: str) -> BankBalance:
        """Booked, held and available on an account."""

    def statement(
        self, iban: str, after: int = 0, end_to_end_id: str | None = None
    ) -> list[StatementEntry]:
        """Booked entries after entry id `after`, oldest first (only those of one
        end-to-end id, if given)."""


@runtime_checkable
class Liquidity(Protocol):
    """One liquidity provider (a counterparty). Errors: QuoteExpired, TradeRejected,
    QuoteInvalid, OrderUnknown (permanent); DependencyUnavailable (transient: after it,
    an order's fate is unknown: query it by client order id before anything else)."""

    counterparty: str

    def quote(
        self, pair: str, side: Side, quantity: int | None = None, notional: int | None = None
    ) -> Quote:
        """A firm quote for a quantity (asset minor units) or a notional (cents)."""

    def execute(self, quote_id: str, client_order_id: str) -> Fill:
        """Trade on a quote. Idempotent by client order id: a repeat returns the first fill
        (or raises the first refusal)."""

    def order(self, client_order_id: str) -> Fill:
        """The fill of an order by client order id; OrderUnknown if it was never executed;
        TradeRejected or QuoteExpired if it was refused."""

    def instructions(self) -> SettlementInstructions:
        """Where the provider takes and pays each leg of a settlement."""

    def settle(
        self,
        settlement_id: str,
        end_to_end_id: str,
        orders: Sequence[str],
        legs: Sequence[SettlementLeg],
    ) -> SettlementState:
        """Hand the provider the net legs of these fills (idempotent by settlement id);
        SettlementMismatch if its own net of them differs. The answer carries the
        provider's confirmation of the legs, signed with its confirmation key."""

    def settlement(self, settlement_id: str) -> SettlementState:
        """Where the settlement is: each leg's status and delivery reference."""

    def cancel_settlement(self, settlement_id: str) -> SettlementState:
        """Give up a settlement: its fills are unsettled again at the provider."""

    def confirmation_key(self) -> bytes:
        """The raw Ed25519 public key the provider signs its settlement confirmations
        with, as it publishes it (registered in governance only by a quorum)."""


@runtime_checkable
class TradeStore(Protocol):
    """Executed trades (for settlement) and clients' accounts at the bank."""

    def record(self, trade: TradeRecord) -> TradeRecord:
        """Store a trade once per operation id; a repeat returns the stored one."""

    def get(self, operation_id: str) -> TradeRecord | None: ...

    def unsettled(self, counterparty: str | None = None) -> list[TradeRecord]:
        """Trades no settlement has taken yet, oldest first."""

    def assign(self, settlement_id: str, operation_ids: Sequence[str]) -> list[str]:
        """Give these unsettled trades to a settlement; returns those it took (a trade
        already in another settlement is not taken twice)."""

    def for_settlement(self, settlement_id: str) -> list[TradeRecord]: ...

    def release(self, settlement_id: str, counterparty: str) -> list[str]:
        """Take a counterparty's trades back from a settlement that did not happen: they
        are unsettled again. Returns their operation ids."""

    def set_bank_account(self, client_id: str, iban: str, bic: str) -> None:
        """Register the client's account at the bank (NotFound for an unknown client)."""

    def bank_account(self, client_id: str) -> tuple[str, str] | None:
        """(IBAN, BIC) of the client's bank account, if registered."""
