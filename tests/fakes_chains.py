"""In-memory fakes of the chain-facing ports for the fast saga tier: the payouts (sending
a payment on its chain), the chain watcher's deposit observations and the staking
chain's delegations. Each passes the
contract suite its real implementation passes (tests/contracts/test_payouts.py,
test_deposit_observations.py)."""

from __future__ import annotations

import hashlib
import math
import re
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Literal

from sagas.deposit import DepositState
from sagas.errors import ChainRejected, KeyAccessDenied
from sagas.staking import DelegationView, TxOutcome, ValidatorState
from sagas.withdrawal import ChainStatus

_EVM_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


def _tx_id(operation_id: str, asset: str, attempt: int) -> str:
    digest = uuid.uuid5(uuid.NAMESPACE_URL, f"{operation_id}#{attempt}").hex * 2
    return digest if asset == "BTC" else "0x" + digest


@dataclass
class _Payment:
    asset: str
    tx_hash: str
    attempt: int = 0
    fee: int | None = None  # a client-paid fee (ATOM): what the chain charges


@dataclass
class FakePayouts:
    """sagas.ports.Payouts scripted. A payment is recorded once per operation id (a repeat
    send returns it and pays nothing more); its transaction is pending until it has been
    asked about `final_after` times, then `outcome` (final, or reverted) with `fee`.

    `sends` counts send calls per operation, `paid` what each destination received,
    `rebroadcasts` the rebroadcast calls. An EVM destination that is not an address, or
    an amount that is not positive, is refused (ChainRejected) with nothing recorded;
    Bitcoin addresses are not checked."""

    final_after: int = 1
    outcome: Literal["final", "reverted"] = "final"
    fee: int = 21_000
    sends: dict[str, int] = field(default_factory=dict)
    paid: dict[str, int] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # ATOM: the address it left from
    atom_fee: int | None = None  # ATOM: what the chain charges, if not the fee offered
    rebroadcasts: int = 0
    _payments: dict[str, _Payment] = field(default_factory=dict)
    _polls: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send(
        self,
        operation_id: str,
        asset: str,
        destination: str,
        amount: int,
        source: str | None = None,
        fee: int = 0,
    ) -> str:
        with self._lock:
            self.sends[operation_id] = self.sends.get(operation_id, 0) + 1
            recorded = self._payments.get(operation_id)
            if recorded is not None:
                return recorded.tx_hash
            if amount <= 0:
                raise ChainRejected("amount must be positive")
            if asset == "ATOM":  # from the client's own address, which pays the fee
                if not (destination.startswith("cosmos1") and source and fee > 0):
                    raise ChainRejected(f"not a payment from a client's address: {destination!r}")
                self.sources[operation_id] = source
            elif asset != "BTC" and not _EVM_ADDRESS.match(destination):
                raise ChainRejected(f"not an address: {destination!r}")
            payment = _Payment(
                asset=asset,
                tx_hash=_tx_id(operation_id, asset, 0),
                fee=(fee if self.atom_fee is None else self.atom_fee) if asset == "ATOM" else None,
            )
            self._payments[operation_id] = payment
            self.paid[destination] = self.paid.get(destination, 0) + amount
            return payment.tx_hash

    def _mined(self, operation_id: str) -> bool:
        return self._polls.get(operation_id, 0) >= self.final_after

    def status(self, operation_id: str, asset: str) -> ChainStatus:
        with self._lock:
            payment = self._payments.get(operation_id)
            if payment is None:
                raise KeyError(f"no payment {operation_id}")
            self._polls[operation_id] = self._polls.get(operation_id, 0) + 1
            fee_asset = payment.asset if payment.asset in ("BTC", "ATOM") else "ETH"
            if not self._mined(operation_id):
                return ChainStatus(state="pending", tx_hash=payment.tx_hash, fee_asset=fee_asset)
            return ChainStatus(
                state=self.outcome,
                tx_hash=payment.tx_hash,
                confirmations=12,
                fee=self.fee if payment.fee is None else payment.fee,
                fee_asset=fee_asset,
            )

    def rebroadcast(self, operation_id: str) -> None:
        with self._lock:
            self.rebroadcasts += 1

    def bump(
        self, operation_id: str, asset: str, destination: str, amount: int, percent: int
    ) -> str:
        """A pending payment's transaction is replaced (a new id, the same payment); a mined
        one stands and is returned."""
        if percent <= 110:
            raise ValueError("a replacement must raise fees by more than 10%")
        with self._lock:
            payment = self._payments.get(operation_id)
            if payment is None:
                raise KeyError(f"no payment {operation_id}")
            if not self._mined(operation_id):
                payment.attempt += 1
                payment.tx_hash = _tx_id(operation_id, payment.asset, payment.attempt)
            return payment.tx_hash


@dataclass(frozen=True)
class Output:
    """A deposit as the watcher reads it from a block: one output of a transaction to an
    address the platform gave the account `account_id`."""

    tx_hash: str
    position: str
    address: str
    account_id: str
    asset: str
    amount: int
    chain: str = "bitcoin"


@dataclass
class _Observation:
    output: Output
    block: str
    state: Literal["seen", "final", "reorged"] = "seen"


class FakeDepositObservations:
    """sagas.ports.DepositObservations over scripted chains, one per chain name, with the
    chain watcher's rules: an output is observed once per block it is in; it is final
    when its block is `confirmations` deep; a reorg drops its blocks' observations.

    `mine` adds a block at the tip (what is deep enough below it becomes final); `bury`
    grows the chain until a block is just deep enough (it and the blocks below it are
    final, those above are not); `drop` replaces a block and those above it with a longer
    branch of empty blocks (a reorg)."""

    def __init__(self, confirmations: int = 6) -> None:
        self.confirmations = confirmations
        self._chains: dict[str, list[str]] = {}
        self._observations: list[_Observation] = []
        self._lock = threading.Lock()
        self._blocks = 0

    def _new_block(self, chain: str) -> str:
        self._blocks += 1
        block = f"{chain}-block-{self._blocks}"
        self._chains.setdefault(chain, []).append(block)
        return block

    def _height(self, chain: str, block: str) -> int:
        return self._chains[chain].index(block)

    def mine(self, *outputs: Output, chain: str = "bitcoin") -> str:
        """A new block at the tip with these outputs in it: each seen. Its id."""
        with self._lock:
            block = self._new_block(chain)
            for output in outputs:
                assert output.chain == chain, "an output is mined on its own chain"
                self._observations.append(_Observation(output, block))
            self._finalise(chain)
            return block

    def bury(self, block: str, chain: str = "bitcoin") -> None:
        with self._lock:
            height = self._height(chain, block)
            while len(self._chains[chain]) - height < self.confirmations:
                self._new_block(chain)
            self._finalise(chain)

    def _finalise(self, chain: str) -> None:
        blocks = self._chains[chain]
        deep = set(blocks[: max(len(blocks) - self.confirmations + 1, 0)])
        for obs in self._observations:
            if obs.output.chain == chain and obs.block in deep and obs.state == "seen":
                obs.state = "final"

    def drop(self, block: str, chain: str = "bitcoin") -> None:
        with self._lock:
            blocks = self._chains[chain]
            height = self._height(chain, block)
            dropped, blocks[height:] = set(blocks[height:]), []
            for obs in self._observations:
                if obs.output.chain == chain and obs.block in dropped:
                    obs.state = "reorged"
            for _ in range(len(dropped) + 1):  # the new branch is longer
                self._new_block(chain)
            self._finalise(chain)

    def _of(self, chain: str, tx_hash: str, position: str) -> list[_Observation]:
        return [
            o
            for o in self._observations
            if (o.output.chain, o.output.tx_hash, o.output.position) == (chain, tx_hash, position)
        ]

    def state(self, chain: str, tx_hash: str, position: str) -> DepositState:
        with self._lock:
            states = {o.state for o in self._of(chain, tx_hash, position)}
        if not states:
            return "unknown"
        if "final" in states:
            return "final"
        return "seen" if "seen" in states else "reorged"

    def final(self, chain: str, tx_hash: str, position: str) -> tuple[str, str, str, int] | None:
        with self._lock:
            for o in self._of(chain, tx_hash, position):
                if o.state == "final":
                    out = o.output
                    return out.address, out.account_id, out.asset, out.amount
        return None


@dataclass
class _Delegation:
    kind: str
    delegator: str
    validator: str
    amount: int
    fee: int
    tx_hash: str
    height: int
    rate: Fraction = Fraction(1)  # the validator's tokens per share when it was made
    polls: int = 0
    to: str = ""  # a redelegation's destination validator
    to_rate: Fraction = Fraction(1)  # the destination's rate when it was made

    @property
    def moved(self) -> int:
        """A redelegation's tokens at its destination: the source shares it unbonded
        (amount / rate, truncated) at the source's rate, truncated, as the SDK does: a
        unit less than the amount at a source rate below 1."""
        shares = math.floor(Fraction(self.amount * 10**18) / self.rate)
        return math.floor(shares * self.rate / 10**18)


class FakeDelegations:
    """sagas.ports.Delegations in memory: one transaction per operation (a second call
        returns the first's hash), in a block after `in_block_after` polls of its outcome,
        succeeded unless its operation is in `fail`; an undelegation unbonds for
        `unbonding`, holds `amount * (100 - slash_percent) / 100` from its first read on,
        and is released after `release_after` reads; it pays `rewards` on the way (the chain
    withdraws a delegation's rewards before it undelegates). `refuse`: operations the signer
        refuses (KeyAccessDenied at delegate/undelegate; "*": every one)."""

    def __init__(
        self,
        in_block_after: int = 1,
        unbonding: timedelta = timedelta(days=21),
        release_after: int = 1,
        slash_percent: int = 0,
        rewards: int = 0,
    ) -> None:
        self.txs: dict[str, _Delegation] = {}
        self.calls: dict[str, int] = {}
        self.fail: set[str] = set()
        self.refuse: set[str] = set()
        self.reads: dict[int, int] = {}
        # Rewards outstanding per (delegator, validator): a claim pays them and zeroes them.
        self.accrued: dict[tuple[str, str], int] = {}
        # Slashing: each validator's exchange rate (tokens per share: 1 until `slash` cuts
        # it, as the chain does), jailed validators with the height their unbonding began,
        # and (delegator, validator) pairs the node reads as missing (a lagging node).
        self.rates: dict[str, list[tuple[int, Fraction]]] = {}  # (from height, rate)
        self.jailed: dict[str, int] = {}
        self.missing: set[tuple[str, str]] = set()
        self._in_block_after = in_block_after
        self._unbonding = unbonding
        self._release_after = release_after
        self._slash = slash_percent
        self._rewards = rewards
        self._height = 100

    def _send(
        self, kind: str, op: str, delegator: str, validator: str, amount: int, fee: int
    ) -> str:
        self.calls[op] = self.calls.get(op, 0) + 1
        if op in self.refuse or "*" in self.refuse:
            raise KeyAccessDenied(f"{op}: refused")
        if op not in self.txs:
            self._height += 1
            digest = hashlib.sha256(op.encode()).hexdigest().upper()
            self.txs[op] = _Delegation(
                kind, delegator, validator, amount, fee, digest, self._height,
                self.rate(validator),
            )  # fmt: skip
        return self.txs[op].tx_hash

    def delegate(
        self, operation_id: str, delegator: str, validator: str, amount: int, fee: int
    ) -> str:
        return self._send("delegate", operation_id, delegator, validator, amount, fee)

    def undelegate(
        self, operation_id: str, delegator: str, validator: str, amount: int, fee: int
    ) -> str:
        return self._send("undelegate", operation_id, delegator, validator, amount, fee)

    def redelegate(
        self,
        operation_id: str,
        delegator: str,
        source: str,
        validator: str,
        amount: int,
        fee: int,
    ) -> str:
        tx_hash = self._send("redelegate", operation_id, delegator, source, amount, fee)
        tx = self.txs[operation_id]
        if not tx.to:
            tx.to, tx.to_rate = validator, self.rate(validator)
        return tx_hash

    def pending_rewards(self, delegator: str, validator: str) -> int:
        return self.accrued.get((delegator, validator), 0)

    def rate(self, validator: str, height: int | None = None) -> Fraction:
        """The validator's tokens per share after `height` (else now)."""
        rates = [r for h, r in self.rates.get(validator, []) if height is None or h <= height]
        return rates[-1] if rates else Fraction(1)

    def slash(self, validator: str, fraction: Fraction) -> None:
        """The chain slashes the validator in a block of its own: its tokens (so every
        delegation's balance) fall by `fraction`; the delegators' shares stay."""
        self._height += 1
        cut = self.rate(validator) * (1 - fraction)
        self.rates.setdefault(validator, []).append((self._height, cut))

    def shares(self, delegator: str, validator: str, height: int | None = None) -> int:
        """The pair's shares as the chain counts them (sdk.Dec integers, * 10**18) after
        `height` (else now): a delegation adds amount / rate, an undelegation takes amount
        / rate, both truncated (the SDK's SharesFromTokens); each transaction counts once
        the chain has it."""
        held = 0
        for op, tx in self.txs.items():
            if tx.delegator != delegator or op in self.fail:
                continue
            if height is not None and tx.height > height:
                continue
            if tx.kind == "redelegate" and tx.to == validator:  # the shares arrive
                held += math.floor(Fraction(tx.moved * 10**18) / tx.to_rate)
                continue
            if tx.validator != validator:
                continue
            exact = math.floor(Fraction(tx.amount * 10**18) / tx.rate)
            held += {"delegate": exact, "undelegate": -exact, "redelegate": -exact}.get(tx.kind, 0)
        return max(0, held)

    def delegation(
        self, delegator: str, validator: str, height: int | None = None
    ) -> DelegationView | None:
        """The pair's shares at the validator's rate after `height` (else now), truncated;
        None if it holds none (or the pair is in `missing`)."""
        shares = self.shares(delegator, validator, height)
        if shares == 0 or (delegator, validator) in self.missing:
            return None
        rate = self.rate(validator, height)
        return DelegationView(
            height=self._height if height is None else height,
            shares=shares,
            balance=math.floor(shares * rate / 10**18),
            validator_tokens=rate.numerator * 10**6,
            validator_shares=rate.denominator * 10**24,
        )

    def validator_state(self, validator: str) -> ValidatorState:
        jailed = validator in self.jailed
        return ValidatorState(
            operator=validator,
            jailed=jailed,
            status="BOND_STATUS_UNBONDING" if jailed else "BOND_STATUS_BONDED",
            unbonding_height=self.jailed.get(validator, 0),
        )

    def claim_rewards(
        self, operation_id: str, delegator: str, validators: Sequence[str], fee: int
    ) -> str:
        if not validators:
            raise ValueError("a claim names at least one validator")
        first = operation_id not in self.txs
        paid = sum(self.accrued.get((delegator, v), 0) for v in validators) if first else 0
        tx_hash = self._send(
            "withdraw_rewards", operation_id, delegator, ",".join(validators), paid, fee
        )
        if first:  # paid: the chain's outstanding rewards are zero again
            for v in validators:
                self.accrued.pop((delegator, v), None)
        return tx_hash

    def outcome(self, operation_id: str) -> TxOutcome:
        tx = self.txs.get(operation_id)
        if tx is None:
            return TxOutcome(state="pending")
        tx.polls += 1
        if tx.polls <= self._in_block_after:
            return TxOutcome(state="pending", tx_hash=tx.tx_hash)
        if operation_id in self.fail:
            return TxOutcome(
                state="failed", tx_hash=tx.tx_hash, height=tx.height, fee=tx.fee, detail="code 5"
            )
        completion, rewards = None, 0
        if tx.kind in ("undelegate", "redelegate"):
            completion, rewards = datetime.now(UTC) + self._unbonding, self._rewards
        if tx.kind == "withdraw_rewards":
            rewards = tx.amount
        return TxOutcome(
            state="succeeded",
            tx_hash=tx.tx_hash,
            height=tx.height,
            fee=tx.fee,
            completion_time=completion,
            rewards=rewards,
            moved=tx.moved if tx.kind == "redelegate" else None,
        )

    def unbonding_balance(self, delegator: str, validator: str, height: int) -> int | None:
        tx = next(t for t in self.txs.values() if t.height == height)
        self.reads[height] = self.reads.get(height, 0) + 1
        if self.reads[height] > self._release_after:
            return None
        return tx.amount * (100 - self._slash) // 100
