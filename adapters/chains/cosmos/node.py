"""CosmosNode over the chain's gRPC (cosmpy's generated stubs, every call with a deadline):
balances, accounts, staking positions and rewards, and the raw broadcast of transactions
that tx.py built and the signer signed. Amounts are ints in the denom's minor unit."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import grpc
from cosmpy.protos.cosmos.auth.v1beta1.auth_pb2 import BaseAccount
from cosmpy.protos.cosmos.auth.v1beta1.query_pb2 import QueryAccountRequest
from cosmpy.protos.cosmos.auth.v1beta1.query_pb2_grpc import QueryStub as AuthStub
from cosmpy.protos.cosmos.bank.v1beta1.query_pb2 import QueryBalanceRequest
from cosmpy.protos.cosmos.bank.v1beta1.query_pb2_grpc import QueryStub as BankStub
from cosmpy.protos.cosmos.base.query.v1beta1.pagination_pb2 import PageRequest
from cosmpy.protos.cosmos.base.tendermint.v1beta1.query_pb2 import GetLatestBlockRequest
from cosmpy.protos.cosmos.base.tendermint.v1beta1.query_pb2_grpc import (
    ServiceStub as TendermintStub,
)
from cosmpy.protos.cosmos.distribution.v1beta1.query_pb2 import QueryDelegationRewardsRequest
from cosmpy.protos.cosmos.distribution.v1beta1.query_pb2_grpc import (
    QueryStub as DistributionStub,
)
from cosmpy.protos.cosmos.staking.v1beta1.query_pb2 import (
    QueryDelegationRequest,
    QueryRedelegationsRequest,
    QueryUnbondingDelegationRequest,
    QueryValidatorRequest,
)
from cosmpy.protos.cosmos.staking.v1beta1.query_pb2_grpc import QueryStub as StakingStub
from cosmpy.protos.cosmos.staking.v1beta1.staking_pb2 import BondStatus
from cosmpy.protos.cosmos.tx.v1beta1.service_pb2 import (
    BroadcastMode,
    BroadcastTxRequest,
    GetTxRequest,
    SimulateRequest,
)
from cosmpy.protos.cosmos.tx.v1beta1.service_pb2_grpc import ServiceStub as TxStub

from adapters.chains.cosmos.tx import UnsignedCosmosTx, simulation_tx
from adapters.chains.cosmos.tx import tx_hash as hash_of
from sagas.errors import ChainRejected, DependencyUnavailable

# The gRPC metadata the SDK's query router reads the height to answer at from
# (types/grpc.GRPCBlockHeightHeader).
HEIGHT_HEADER = "x-cosmos-block-height"
DEC_PRECISION = 10**18  # sdk.Dec on the gRPC wire: the integer of value * 10**18
# The SDK's own ABCI codes (codespace "sdk", types/errors/errors.go).
SEQUENCE_MISMATCH = 32
TX_IN_MEMPOOL_CACHE = 19
MEMPOOL_FULL = 20
_TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
_DEC = re.compile(r"([0-9]+)(?:\.([0-9]{1,18}))?")
_RFC3339_FRACTION = re.compile(r"(\.[0-9]{6})[0-9]+")


class TxRejected(ChainRejected):
    """CheckTx refused the transaction with an ABCI code (permanent for these bytes): it
    is not in the mempool and will not be in a block."""

    def __init__(self, abci_code: int, codespace: str, log: str) -> None:
        super().__init__(f"{codespace} code {abci_code}: {log}")
        self.abci_code, self.codespace, self.log = abci_code, codespace, log


class SequenceMismatch(TxRejected):
    """The transaction's sequence is not the account's next (sdk code 32): another
    transaction took it, or one before it is missing. Rebuild with `account`'s sequence."""


class QueryRefused(ValueError):
    """The node answered the query with an error other than "not found" (a malformed
    address, an unsupported account type): permanent for these arguments."""


class UnknownValidator(LookupError):
    """No validator has this operator address."""


@dataclass(frozen=True)
class UnbondingEntry:
    creation_height: int
    completion_time: datetime  # aware, UTC: the tokens are paid out at the first block after
    initial_balance: int
    balance: int  # less than initial_balance if the validator was slashed meanwhile


@dataclass(frozen=True)
class Position:
    """A delegation and its validator at one height; shares as sdk.Dec integers (* 10**18)."""

    height: int
    shares: int
    balance: int  # shares * validator_tokens / validator_shares, truncated
    validator_tokens: int
    validator_shares: int


@dataclass(frozen=True)
class ValidatorInfo:
    operator: str
    status: str  # BOND_STATUS_BONDED, _UNBONDING or _UNBONDED
    jailed: bool
    tokens: int
    delegator_shares: str  # an sdk.Dec, exact: "90000000.000000000000000000"
    unbonding_height: int = 0  # where its current unbonding began (a jailing starts one)


@dataclass(frozen=True)
class CosmosEvent:
    type: str
    attributes: tuple[tuple[str, str], ...]

    def get(self, key: str) -> str | None:
        return next((v for k, v in self.attributes if k == key), None)


@dataclass(frozen=True)
class CosmosTxResult:
    tx_hash: str
    height: int
    code: int  # ABCI code: 0 succeeded; else the tx failed in its block (its fee is paid)
    codespace: str
    raw_log: str
    gas_wanted: int
    gas_used: int
    timestamp: datetime | None  # the block's time, to the second (the SDK formats it so)
    events: tuple[CosmosEvent, ...]

    @property
    def succeeded(self) -> bool:
        return self.code == 0

    def events_of(self, type_: str) -> list[CosmosEvent]:
        return [e for e in self.events if e.type == type_]


class CosmosNode:
    """One node's gRPC endpoint (`grpc+http://host:port` or `grpc+https://...`). Transport
    failures and timeouts raise DependencyUnavailable (transient)."""

    def __init__(self, grpc_url: str, denom: str = "uatom", timeout: float = 10.0) -> None:
        url = urlparse(grpc_url)
        if url.scheme not in ("grpc+http", "grpc+https") or not url.hostname or not url.port:
            raise ValueError(f"not a grpc+http(s)://host:port url: {grpc_url!r}")
        target = f"{url.hostname}:{url.port}"
        # Channels connect lazily: constructing one does no I/O.
        self._channel = (
            grpc.secure_channel(target, grpc.ssl_channel_credentials())
            if url.scheme == "grpc+https"
            else grpc.insecure_channel(target)
        )
        self._denom, self._timeout = denom, timeout
        self._auth = AuthStub(self._channel)
        self._bank = BankStub(self._channel)
        self._staking = StakingStub(self._channel)
        self._distribution = DistributionStub(self._channel)
        self._tendermint = TendermintStub(self._channel)
        self._txs = TxStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def _query(
        self,
        method: Callable[..., Any],
        request: Any,
        missing_ok: bool = False,
        height: int | None = None,
    ) -> Any:
        """`method(request)`, at `height` if given (the SDK's block-height header; else
        the latest block); None for NOT_FOUND if `missing_ok`, else QueryRefused."""
        meta = None if height is None else ((HEIGHT_HEADER, str(height)),)
        try:
            return method(request, timeout=self._timeout, metadata=meta)
        except grpc.RpcError as exc:
            code = exc.code()
            if missing_ok and code == grpc.StatusCode.NOT_FOUND:
                return None
            if code in _TRANSIENT:
                raise DependencyUnavailable(f"cosmos node: {code.name}") from exc
            raise QueryRefused(f"cosmos node: {code.name}: {exc.details()}") from exc

    # --- the chain --------------------------------------------------------------------
    def chain_id(self) -> str:
        block = self._query(self._tendermint.GetLatestBlock, GetLatestBlockRequest()).block
        return str(block.header.chain_id)

    def height(self) -> int:
        block = self._query(self._tendermint.GetLatestBlock, GetLatestBlockRequest()).block
        return int(block.header.height)

    # --- accounts ---------------------------------------------------------------------
    def balance(self, address: str) -> int:
        """The address's spendable balance of the node's denom (0 for an unknown one)."""
        reply = self._query(
            self._bank.Balance, QueryBalanceRequest(address=address, denom=self._denom)
        )
        return int(reply.balance.amount or 0)

    def account(self, address: str) -> tuple[int, int] | None:
        """(account number, next sequence); None for an address the chain has never seen
        (it gets an account number when it first receives coins)."""
        reply = self._query(
            self._auth.Account, QueryAccountRequest(address=address), missing_ok=True
        )
        if reply is None:
            return None
        account = BaseAccount()
        if not reply.account.Unpack(account):
            raise QueryRefused(f"{address} is a {reply.account.type_url}, not a BaseAccount")
        return int(account.account_number), int(account.sequence)

    # --- staking ------------------------------------------------------------------------
    def delegation(self, delegator: str, validator: str) -> int:
        """The delegation's balance in tokens (its shares at the validator's current
        exchange rate, truncated); 0 if there is none."""
        request = QueryDelegationRequest(delegator_addr=delegator, validator_addr=validator)
        reply = self._query(self._staking.Delegation, request, missing_ok=True)
        return 0 if reply is None else int(reply.delegation_response.balance.amount)

    def position(
        self, delegator: str, validator: str, height: int | None = None
    ) -> Position | None:
        """The delegation and its validator read at one height: `height`, or the height the
        node answers the delegation's query at (its latest committed state), so a slash
        between the two reads cannot make them disagree. Each answer's height (the header
        the SDK's query router echoes) is checked. None if the chain has no such
        delegation there; UnknownValidator if it has no such validator."""
        request = QueryDelegationRequest(delegator_addr=delegator, validator_addr=validator)
        reply, at = self._query_at(self._staking.Delegation, request, height)
        if reply is None:
            return None
        found, _ = self._query_at(
            self._staking.Validator, QueryValidatorRequest(validator_addr=validator), at
        )
        if found is None:
            raise UnknownValidator(validator)
        return Position(
            height=at,
            shares=_atto(reply.delegation_response.delegation.shares),
            balance=int(reply.delegation_response.balance.amount),
            validator_tokens=int(found.validator.tokens),
            validator_shares=_atto(found.validator.delegator_shares),
        )

    def _query_at(
        self, method: Any, request: Any, height: int | None, wrapped_not_found: bool = False
    ) -> tuple[Any | None, int]:
        """(reply or None for NOT_FOUND, the height the node answered at). QueryRefused if
        it does not say, or says another height than `height`. `wrapped_not_found`: an
        INTERNAL whose text is a NotFound is one too (the Redelegations query's, at a
        height)."""
        meta = None if height is None else ((HEIGHT_HEADER, str(height)),)
        try:
            reply, call = method.with_call(request, timeout=self._timeout, metadata=meta)
            answered = call.initial_metadata()
        except grpc.RpcError as exc:
            code = exc.code()
            if code in _TRANSIENT:
                raise DependencyUnavailable(f"cosmos node: {code.name}") from exc
            # At a height the SDK's query router wraps the Redelegations query's NotFound in
            # INTERNAL ("rpc error: code = NotFound desc = redelegation not found").
            wrapped = (
                wrapped_not_found
                and code == grpc.StatusCode.INTERNAL
                and "code = NotFound" in str(exc.details())
            )
            if code != grpc.StatusCode.NOT_FOUND and not wrapped:
                raise QueryRefused(f"cosmos node: {code.name}: {exc.details()}") from exc
            reply, answered = None, exc.initial_metadata()
        said = dict(answered or ()).get(HEIGHT_HEADER)
        if said is None or not str(said).isdigit():
            if reply is None and height is not None:
                return None, height
            raise QueryRefused("cosmos node: no block height in its answer")
        if height is not None and int(said) != height:
            raise QueryRefused(f"cosmos node: answered at {said}, asked for {height}")
        return reply, int(said)

    def rewards(self, delegator: str, validator: str) -> int:
        """The delegation's outstanding reward at the latest block, truncated to whole units
        of the denom (the chain keeps 18 decimals; a claim pays the whole units and gives the
        fraction to the community pool): the least a claim pays. 0 if there is no delegation."""
        request = QueryDelegationRewardsRequest(
            delegator_address=delegator, validator_address=validator
        )
        try:
            reply = self._query(self._distribution.DelegationRewards, request)
        except QueryRefused:
            # SDK 0.46 says "no delegation" as codes.Unknown with text only: ask staking.
            if self.delegation(delegator, validator) == 0:
                return 0
            raise
        atto = sum(_atto(c.amount) for c in reply.rewards if c.denom == self._denom)
        return atto // DEC_PRECISION

    def unbonding(self, delegator: str, validator: str) -> list[UnbondingEntry]:
        """The delegation's unbonding entries still to complete, oldest first."""
        request = QueryUnbondingDelegationRequest(
            delegator_addr=delegator, validator_addr=validator
        )
        reply = self._query(self._staking.UnbondingDelegation, request, missing_ok=True)
        if reply is None:
            return []
        return [
            UnbondingEntry(
                creation_height=int(e.creation_height),
                completion_time=e.completion_time.ToDatetime(tzinfo=UTC),
                initial_balance=int(e.initial_balance),
                balance=int(e.balance),
            )
            for e in reply.unbond.entries
        ]

    def redelegation_entries(
        self, delegator: str, source: str, destination: str, height: int
    ) -> list[tuple[int, datetime, int, int]]:
        """The delegator's redelegation entries from `source` to `destination` as the chain
        held them at `height`: (creation height, completion time, initial balance, the
        destination's shares as sdk.Dec integers) each. An entry's initial balance is what
        its redelegation delegated to the destination: the amount asked for, or a unit
        less at a source rate below 1 (the SDK truncates). Its creation height is the
        transaction's, or for a source then unbonding (jailed) the source's unbonding
        height. Empty if there is none (a source already unbonded makes none)."""
        request = QueryRedelegationsRequest(
            delegator_addr=delegator, src_validator_addr=source, dst_validator_addr=destination
        )
        reply, _ = self._query_at(self._staking.Redelegations, request, height, True)
        if reply is None:
            return []
        return [
            (
                int(e.redelegation_entry.creation_height),
                e.redelegation_entry.completion_time.ToDatetime(tzinfo=UTC),
                int(e.redelegation_entry.initial_balance),
                _atto(e.redelegation_entry.shares_dst),
            )
            for r in reply.redelegation_responses
            for e in r.entries
        ]

    def redelegations_into(self, delegator: str, validator: str) -> list[datetime]:
        """When each of the delegator's redelegation entries into `validator` completes
        (until then the chain refuses a redelegation from it: transitive), latest state."""
        ends: list[datetime] = []
        key = b""
        for _page in range(1000):  # 100 a page (the SDK's default); every page
            request = QueryRedelegationsRequest(
                delegator_addr=delegator, pagination=PageRequest(key=key)
            )
            reply = self._query(self._staking.Redelegations, request, missing_ok=True)
            if reply is None:
                return ends
            ends += [
                e.redelegation_entry.completion_time.ToDatetime(tzinfo=UTC)
                for r in reply.redelegation_responses
                if r.redelegation.validator_dst_address == validator
                for e in r.entries
            ]
            key = bytes(reply.pagination.next_key)
            if not key:
                return ends
        raise QueryRefused(f"{delegator}: more redelegations than the pages read")

    def validator(self, valoper: str) -> ValidatorInfo:
        """The validator's state. UnknownValidator if there is none with that address."""
        reply = self._query(
            self._staking.Validator, QueryValidatorRequest(validator_addr=valoper), True
        )
        if reply is None:
            raise UnknownValidator(valoper)
        v = reply.validator
        return ValidatorInfo(
            operator=str(v.operator_address),
            status=str(BondStatus.Name(v.status)),
            jailed=bool(v.jailed),
            tokens=int(v.tokens),
            delegator_shares=_dec_string(_atto(v.delegator_shares)),
            unbonding_height=int(v.unbonding_height),
        )

    # --- transactions -----------------------------------------------------------------
    def broadcast(self, raw: bytes) -> str:
        """Hand signed TxRaw bytes to the node's CheckTx (sync mode); their tx hash. One the
        node already has is fine. SequenceMismatch or TxRejected (both ChainRejected,
        permanent) if CheckTx refuses it; DependencyUnavailable if the mempool is full."""
        name = hash_of(raw)
        request = BroadcastTxRequest(tx_bytes=raw, mode=BroadcastMode.BROADCAST_MODE_SYNC)
        try:
            reply = self._txs.BroadcastTx(request, timeout=self._timeout).tx_response
        except grpc.RpcError as exc:
            # Whatever the gRPC error, the node may have taken the bytes: never a refusal
            # (only CheckTx's own answer below says it refused them).
            raise DependencyUnavailable(f"cosmos node: {exc.code().name}") from exc
        code, codespace, log = int(reply.code), str(reply.codespace), str(reply.raw_log)
        if code == 0 or (codespace == "sdk" and code == TX_IN_MEMPOOL_CACHE):
            return name
        if codespace == "sdk" and code == SEQUENCE_MISMATCH:
            raise SequenceMismatch(code, codespace, log)
        if codespace == "sdk" and code == MEMPOOL_FULL:
            raise DependencyUnavailable(f"cosmos node: mempool full: {log}")
        raise TxRejected(code, codespace, log)

    def tx(self, tx_hash: str) -> CosmosTxResult | None:
        """The transaction's result once it is in a block; None while the node does not
        know it (in the mempool, or never seen)."""
        reply = self._query(self._txs.GetTx, GetTxRequest(hash=tx_hash), missing_ok=True)
        return None if reply is None else _result(reply.tx_response)

    def wait_tx(self, tx_hash: str, timeout: float, poll: float = 0.2) -> CosmosTxResult:
        """The transaction's result, polling `tx`; DependencyUnavailable if it is not in a
        block within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while (result := self.tx(tx_hash)) is None:
            if time.monotonic() > deadline:
                raise DependencyUnavailable(f"{tx_hash} not in a block within {timeout} s")
            time.sleep(poll)
        return result

    def simulate(self, u: UnsignedCosmosTx) -> int:
        """Gas the transaction uses if executed now (no signature needed). SequenceMismatch
        if its sequence is not the account's next; ChainRejected if it would fail."""
        request = SimulateRequest(tx_bytes=simulation_tx(u))
        try:
            reply = self._txs.Simulate(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            code, details = exc.code(), str(exc.details())
            if code in _TRANSIENT:
                raise DependencyUnavailable(f"cosmos node: {code.name}") from exc
            # SDK 0.46 returns a failed simulation as codes.Unknown with the ABCI error as
            # text only: its code and codespace are not in the reply.
            if "account sequence mismatch" in details:
                raise SequenceMismatch(SEQUENCE_MISMATCH, "sdk", details) from exc
            raise ChainRejected(f"simulation: {details}") from exc
        return int(reply.gas_info.gas_used)


def _atto(amount: str) -> int:
    """An sdk.Dec as an integer of 10**-18: the gRPC wire's form ("1500000000000000000"),
    or the decimal form REST and events use ("1.500000000000000000")."""
    match = _DEC.fullmatch(amount)
    if match is None:
        raise QueryRefused(f"not an sdk.Dec: {amount!r}")
    whole, fraction = match.groups()
    if fraction is None:
        return int(whole)
    return int(whole) * DEC_PRECISION + int(fraction.ljust(18, "0"))


def _dec_string(atto: int) -> str:
    return f"{atto // DEC_PRECISION}.{atto % DEC_PRECISION:018d}"


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _result(r: Any) -> CosmosTxResult:
    events = tuple(
        CosmosEvent(
            type=str(e.type),
            attributes=tuple((_text(a.key), _text(a.value)) for a in e.attributes),
        )
        for e in r.events
    )
    timestamp = None
    if r.timestamp:  # RFC 3339 with nanoseconds; fromisoformat takes microseconds
        timestamp = datetime.fromisoformat(_RFC3339_FRACTION.sub(r"\1", r.timestamp))
    return CosmosTxResult(
        tx_hash=str(r.txhash),
        height=int(r.height),
        code=int(r.code),
        codespace=str(r.codespace),
        raw_log=str(r.raw_log),
        gas_wanted=int(r.gas_wanted),
        gas_used=int(r.gas_used),
        timestamp=timestamp,
        events=events,
    )
