"""What the signer checks before it signs, and the record it keeps of what it signed.

Every check reads one typed value, `Authorised` (the payment an operation authorises:
kind, client, chain, asset, amount, destination, fee cap), from one method,
`SigningGuard.authorised`. Today that reads the operation the saga recorded as
approved; replacing its source (a verified signed intent) changes that method only.

The signer rebuilds what it signs (see services/signer/signer.py for the Bitcoin keys
and sighashes): here the transaction must pay exactly the authorised payment, at no
more than the fee cap, and agree with the signer's own record (signer_record.py):
- Bitcoin: the outputs are the payment plus at most one change output to the wallet's
  internal chain; no input was signed for another operation; a second signature of
  the operation only replaces the first (same payments, the same inputs or more, a
  higher fee) or is the same transaction again. A batch (decision 0025) is checked
  output by output: each names the operation it pays and is exactly that operation's
  authorised payment, each member's share of the fee is within its cap, each member
  is paid by this batch only, for ever, and a replacement pays the same members.
- Ethereum: an EIP-1559 transaction with exactly the known fields, from the hot
  wallet's key, on the platform's chain, within the gas bound of its transfer kind;
  the first signature of an operation takes a nonce never signed for another
  operation, every later one (a fee bump) the same nonce.
Anything else is refused with KeyAccessDenied, which the signing workflow does not
retry; nothing refused is ever signed or recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from web3 import Web3

from adapters.chains.bitcoin.script import output_script
from adapters.chains.cosmos.tx import (
    DecodedCosmosTx,
    DelegateMsg,
    RedelegateMsg,
    SendMsg,
    UndelegateMsg,
    WithdrawRewardsMsg,
)
from adapters.chains.cosmos.tx import tx_hash as cosmos_tx_hash
from adapters.operations import signer_record
from adapters.operations.signer_record import RecordedSignature
from adapters.operations.store import SqlOperationStore
from adapters.sqldb import Conn, SqlDatabase
from sagas import accounts
from sagas.errors import CannotPay, KeyAccessDenied, SigningDeadlinePassed
from sagas.governance import SETTLEMENT_POLICY, ChainedGovernance
from sagas.intents import Intent
from sagas.policy import VELOCITY_WINDOW
from sagas.ports import IntentStore
from sagas.signing import BATCH_PREFIX, Authorised, UnsignedBtcTransaction, fee_shares
from sagas.signing.authority import MAX_POSITION_LINKS, ON_POSITION, authorise
from sagas.staking.intent import POSITION_KINDS

_TRANSFER_SELECTOR = "a9059cbb"  # transfer(address,uint256)
_CLOSED = ("rejected", "expired", "completed", "failed")
HOT_WALLET_ACCOUNT = accounts.hot_lane(0)  # treasury:ETH, decision 0006
# The fields of an EIP-1559 transaction the platform builds; an access list only empty.
_EVM_REQUIRED = frozenset(
    {"type", "chainId", "nonce", "to", "value", "gas", "maxFeePerGas", "maxPriorityFeePerGas"}
)
_EVM_OPTIONAL = frozenset({"data", "accessList"})


@dataclass(frozen=True)
class CosmosRules:
    """The signer's own configuration for the proof-of-stake chain: its chain id and fee
    denom, the validators clients may delegate to (the allow-list), the most fee one
    transaction may pay, and how often a delegator's rewards may be claimed (each claim
    costs the client a fee: a compromised worker may not burn its balance in claims)."""

    chain_id: str
    denom: str
    validators: frozenset[str]
    max_fee: int
    asset: str = "ATOM"
    max_gas: int = 400_000
    claim_every: timedelta = timedelta(hours=24)
    max_claim_fee: int = 10_000


# Message kind -> the intent kind that authorises it (a reward claim needs none).
_COSMOS_INTENTS = {
    "send": "withdrawal",
    "delegate": "stake",
    "undelegate": "unstake",
    "redelegate": "redelegate",
}


# The latest deadline a batch's signing request may carry (decision 0025): the sender
# frees a refused batch's members only after its hold, longer than this.
MAX_SIGNING_WINDOW = timedelta(seconds=30)


def _within_deadline(tx: UnsignedBtcTransaction, what: str) -> None:
    if tx.not_after is not None and datetime.now(UTC) > tx.not_after:
        raise SigningDeadlinePassed(f"{what}: the request's deadline has passed")


def _int(value: object) -> int:
    """A transaction field as an integer; anything unreadable is a refusal, not a crash."""
    if isinstance(value, bool):
        raise KeyAccessDenied(f"unreadable transaction field {value!r}")
    try:
        return int(value, 0) if isinstance(value, str) else int(str(value))
    except ValueError:
        raise KeyAccessDenied(f"unreadable transaction field {value!r}") from None


class SigningGuard:
    def __init__(
        self,
        operations: SqlOperationStore,
        db_url: str,
        tokens: dict[str, str],
        chain_id: int,
        max_fee_per_gas: int,
        gas_limits: tuple[int, int],
        max_btc_fee: int,
        intents: IntentStore,
        governance: ChainedGovernance,
        decimals: Mapping[str, int],
        screened: Callable[[str], bool] = lambda _destination: False,
        chains: Mapping[str, str] | None = None,
        hot_lanes: int = 1,
        cosmos: CosmosRules | None = None,
    ) -> None:
        """`tokens`: asset code -> ERC-20 contract address; `max_fee_per_gas` (wei): the
        most a signed transaction may offer (a fee bump included); `gas_limits`: the most
        gas an ETH and a token transfer may use; `max_btc_fee` (sat): the most fee a
        Bitcoin payment may pay; `hot_lanes`: how many of the hot wallet's addresses
        (lanes, decision 0026) Ethereum payments may be signed from."""
        self._lanes = {accounts.hot_lane(lane) for lane in range(hot_lanes)}
        self._gas_limits = gas_limits
        self._ops = operations
        self._db = SqlDatabase(db_url)
        self._tokens = {k: Web3.to_checksum_address(v) for k, v in tokens.items() if v}
        self._chain_id = chain_id
        self._max_fee = max_fee_per_gas
        self._max_btc_fee = max_btc_fee
        self._intents = intents
        self._governance = governance
        self._decimals = decimals
        self._screened = screened  # the signer's own screening of a destination
        self._chains = chains
        self._cosmos = cosmos

    def __repr__(self) -> str:
        return "SigningGuard()"

    # --- what is authorised: the one place it is read --------------------------------
    def authorised(
        self,
        operation: str,
        chain: Literal["bitcoin", "ethereum", "cosmos"],
        kinds: tuple[str, ...] = ("withdrawal", "settlement_leg"),
    ) -> Authorised:
        """The payment `operation` authorises on `chain`, from signatures alone: its intent,
        the client's signed request, the approvals and governance's policy, verified by
        sagas.signing.authority (the operation's row is only read to refuse a closed
        one); KeyAccessDenied if none."""
        op_id = operation.split("#", 1)[0]
        record = self._ops.get(op_id)
        if record is not None and record.state in _CLOSED:
            raise KeyAccessDenied(f"{op_id} is {record.state}")
        stored = None
        for kind in kinds:
            found = self._intents.intent(op_id, kind)
            # The row's kind column is any writer's word; the signed JSON's kind is what
            # the intent is. A stake stored as an unstake (or a withdrawal) is none.
            if found is not None and found[0].kind == kind:
                stored = stored or found
        intent = None if stored is None else stored[0]
        sources = self._sources(intent) if intent is not None else []
        approvals = [] if intent is None else self._intents.approvals(intent.hash())
        now = datetime.now(UTC)
        window = 0
        with self._db.tx() as conn:
            first = None
            if intent is not None:
                first = signer_record.first_signed_at(conn, op_id, intent.hash())
            if intent is not None:
                since = now - VELOCITY_WINDOW
                holder = intent.client_id or SETTLEMENT_POLICY
                window = signer_record.signed_since(conn, holder, intent.asset, since, op_id)
        # One verified state for the whole decision, and never a chain shorter than the
        # signer verified before.
        governance = self._governance.snapshot()
        with self._db.tx(write=True) as conn:
            signer_record.check_governance_head(
                conn, governance.seq, governance.head, self._governance.record_hash
            )
        granted = authorise(
            op_id,
            intent,
            approvals,
            governance,
            now,
            self._decimals,
            window,
            first,
            screened=self._screened,
            sources=sources,
        )
        asset_chain: object = None
        if self._chains is not None:  # the signer's own asset table, not the intent's word
            asset_chain = self._chains.get(granted.asset)
        elif intent is not None:
            asset_chain = (intent.payload or {}).get("chain")
        if asset_chain != chain:
            raise KeyAccessDenied(f"{op_id} is on {asset_chain}, not {chain}")
        if granted.amount <= 0:
            raise KeyAccessDenied(f"{op_id} names no payment")
        if chain == "bitcoin":
            ceiling = self._max_btc_fee
        elif chain == "cosmos":
            ceiling = 0 if self._cosmos is None else self._cosmos.max_fee
        else:
            ceiling = self._max_fee * self._gas_limit(granted.asset)
        kind = {"settlement_leg": "settlement"}.get(granted.kind, granted.kind)
        return Authorised(
            operation_id=op_id,
            kind=kind,  # type: ignore[arg-type]
            client_id=granted.client_id,
            chain=chain,
            asset=granted.asset,
            amount=granted.amount,
            destination=granted.destination,
            # The intent's cap, never above the signer's own configuration.
            fee_cap=min(granted.fee_cap, ceiling),
            intent_hash=granted.intent_hash,
            velocity_limit=granted.velocity_limit,
            holder=granted.holder,
            request_claims=granted.request_claims,
            source=granted.source,
        )

    def _sources(self, intent: Intent) -> list[Intent]:
        """An unstake's or a redelegation's position, then each redelegation's source, to
        the stake. The rows are any writer's: a link is only an intent this signer itself
        signed under that operation id (its record holds that intent's hash for it), so a
        row copied from another position under this id, or one never signed, is none; the
        chain then ends short of a stake and sagas.signing.authority refuses it (which also
        verifies every link by its client's signatures)."""
        found: list[Intent] = []
        at = intent
        while at.kind in ON_POSITION and len(found) <= MAX_POSITION_LINKS:
            position_id = (at.payload or {}).get("stake")
            if not isinstance(position_id, str):
                break
            signed = []
            for kind in sorted(POSITION_KINDS):
                got = self._intents.intent(position_id, kind)
                if got is None or got[0].kind != kind or got[0].operation_id != position_id:
                    continue
                with self._db.tx() as conn:
                    if signer_record.first_signed_at(conn, position_id, got[0].hash()):
                        signed.append(got[0])
            if len(signed) != 1:  # none signed (or, impossibly, two): no position
                break
            found.append(signed[0])
            at = signed[0]
        return found

    def _claim_request(self, conn: Conn, auth: Authorised) -> None:
        """One client request (one confirmed trade of a settlement), one payment: the first
        signature claims the signed request, or each trade the counterparty confirmed,
        for its operation in the signer's record; an intent of another operation that
        carries the same request or settles the same trades again is refused (the claims
        roll back with the refusal)."""
        for what in auth.request_claims:
            owner = signer_record.claim(conn, what, auth.operation_id)
            if owner != auth.operation_id:
                subject = "client's request" if what.startswith("request:") else "trade"
                raise KeyAccessDenied(f"{auth.operation_id}: the {subject} was signed for {owner}")

    def _velocity(self, conn: Conn, auth: Authorised) -> None:
        """Under the client's lock: what the signer signed in the window (other operations)
        plus this one stays within the policy's limit (two concurrent first signatures
        each within it cannot together exceed it)."""
        if auth.velocity_limit is None:
            return
        signer_record.lock_velocity(conn, auth.holder, auth.asset)
        since = datetime.now(UTC) - VELOCITY_WINDOW
        used = signer_record.signed_since(conn, auth.holder, auth.asset, since, auth.operation_id)
        if used + auth.amount > auth.velocity_limit:
            raise KeyAccessDenied(f"{auth.operation_id}: above the daily velocity limit")

    def _gas_limit(self, asset: str) -> int:
        return self._gas_limits[0] if asset == "ETH" else self._gas_limits[1]

    def _lane_of(self, wallet_id: str, index: int, address: str) -> str | None:
        """The hot wallet lane's account the key (wallet, index) is the address of, if it
        is one (whatever the signer's setting: a lane dropped from it too): looked up by
        the address the signer derived, and only if that row names this wallet and path
        (a copied wallet row under another id cannot make a client's key a lane)."""
        with self._db.tx() as conn:
            row = conn.one(
                "select account_id, wallet_id, change, address_index from deposit_addresses "
                "where address = ? and chain = 'ethereum'",
                (address,),
            )
        if row is None or (str(row[1]), int(row[2]), int(row[3])) != (wallet_id, 0, index):
            return None
        account = str(row[0])
        is_lane = account == HOT_WALLET_ACCOUNT or account.startswith(accounts.LANE_PREFIX)
        return account if is_lane else None

    def _signed_from(self, operation: str, wallet_id: str, account: str) -> bool:
        """Whether the signer signed the operation from this key before: a lane since
        dropped from the setting may sign that payment again (a fee bump, a lost answer),
        at the same nonce (checked below), and nothing else."""
        with self._db.tx() as conn:
            return any(
                (prior.wallet_id, prior.account) == (wallet_id, account)
                for prior in signer_record.signatures(conn, operation)
            )

    # --- Ethereum -----------------------------------------------------------------------
    def _check_evm_fields(self, auth: Authorised, tx: dict[str, object]) -> int:
        """KeyAccessDenied unless `tx` is exactly the authorised payment; its nonce."""
        op = auth.operation_id
        keys = set(tx)
        if not _EVM_REQUIRED <= keys <= _EVM_REQUIRED | _EVM_OPTIONAL:
            unknown = sorted(keys - _EVM_REQUIRED - _EVM_OPTIONAL)
            missing = sorted(_EVM_REQUIRED - keys)
            raise KeyAccessDenied(
                f"withdrawal {op}: not an EIP-1559 transaction the platform builds "
                f"(unknown {unknown}, missing {missing})"
            )
        if tx.get("accessList") not in (None, [], ()):
            raise KeyAccessDenied(f"withdrawal {op}: an access list")
        # EIP-1559 only: a legacy or access-list transaction's gasPrice is not capped here.
        if _int(tx["type"]) != 2:
            raise KeyAccessDenied(f"withdrawal {op}: only EIP-1559 (type 2) transactions")
        if _int(tx["chainId"]) != self._chain_id:
            raise KeyAccessDenied(f"withdrawal {op}: chain id {tx['chainId']}")
        gas, max_fee = _int(tx["gas"]), _int(tx["maxFeePerGas"])
        limit = self._gas_limit(auth.asset)
        if not 0 < gas <= limit:
            raise KeyAccessDenied(f"withdrawal {op}: gas {gas} outside 1..{limit}")
        if max_fee > self._max_fee or not 0 <= _int(tx["maxPriorityFeePerGas"]) <= max_fee:
            raise KeyAccessDenied(f"withdrawal {op}: fee above {self._max_fee} wei/gas")
        if gas * max_fee > auth.fee_cap:
            raise KeyAccessDenied(f"withdrawal {op}: fee above the cap {auth.fee_cap} wei")
        to = Web3.to_checksum_address(str(tx["to"]))
        value = _int(tx["value"])
        data = str(tx.get("data") or "").removeprefix("0x").lower()
        destination = Web3.to_checksum_address(auth.destination)
        if auth.asset == "ETH":
            ok = to == destination and value == auth.amount and data == ""
        else:
            expected = (
                _TRANSFER_SELECTOR
                + bytes.fromhex(destination[2:]).rjust(32, b"\0").hex()
                + auth.amount.to_bytes(32, "big").hex()
            )
            ok = to == self._tokens.get(auth.asset) and value == 0 and data == expected
        if not ok:
            raise KeyAccessDenied(f"transaction does not match withdrawal {op}")
        nonce = _int(tx["nonce"])
        if nonce < 0:
            raise KeyAccessDenied(f"withdrawal {op}: nonce {nonce}")
        return nonce

    def sign_evm(
        self,
        operation: str,
        wallet_id: str,
        index: int,
        address: str,
        tx: dict[str, object],
        sign: Callable[[], bytes],
    ) -> bytes:
        """`sign()` if `tx` is the authorised payment and its nonce agrees with the record;
        the signature recorded before it is returned. `address`: the key's, which the
        signer derived (the record names the sending account by it)."""
        auth = self.authorised(operation, "ethereum")
        op = auth.operation_id
        # Only from the hot wallet's lanes, on this chain, at a bounded fee. (A payment
        # stays on the lane of its first signature: the nonce check below.)
        # The signer's own lanes; or a lane dropped from its setting that it signed
        # this operation from before.
        lane = self._lane_of(wallet_id, index, address)
        if lane is None or (
            lane not in self._lanes
            and not self._signed_from(op, wallet_id, Web3.to_checksum_address(address))
        ):
            raise KeyAccessDenied(f"withdrawal {op}: not the hot wallet's key")
        nonce = self._check_evm_fields(auth, tx)
        account = Web3.to_checksum_address(address)
        with self._db.tx(write=True) as conn:
            signer_record.lock(conn, op)
            self._claim_request(conn, auth)
            self._velocity(conn, auth)
            for prior in signer_record.signatures(conn, op):
                # Pinned to its first intent: a later intent written for the operation
                # (another destination or amount) is not re-signed over the first.
                if prior.intent_hash != auth.intent_hash:
                    raise KeyAccessDenied(f"withdrawal {op} was signed for another intent")
                # A fee bump keeps the lane and the nonce: one operation never pays twice.
                if (prior.account, prior.nonce) != (account, nonce):
                    raise KeyAccessDenied(
                        f"withdrawal {op} was signed with nonce {prior.nonce} from "
                        f"{prior.account}, not {nonce} from {account}"
                    )
            owner = signer_record.claim(
                conn, signer_record.evm_claim(self._chain_id, account, nonce), op
            )
            if owner != op:
                raise KeyAccessDenied(f"withdrawal {op}: nonce {nonce} was signed for {owner}")
            raw = sign()
            signer_record.insert(
                conn,
                RecordedSignature(
                    operation_id=op,
                    chain="ethereum",
                    wallet_id=wallet_id,
                    tx_hash="0x" + bytes(Web3.keccak(raw)).hex(),
                    inputs=(),
                    payments=((auth.destination, auth.amount),),
                    fee=_int(tx["gas"]) * _int(tx["maxFeePerGas"]),
                    account=account,
                    nonce=nonce,
                    client_id=auth.holder,  # whose velocity window it counts in
                    asset=auth.asset,
                    intent_hash=auth.intent_hash,
                ),
            )
        return raw

    # --- Bitcoin ------------------------------------------------------------------------
    def sign_btc(
        self,
        operation: str,
        wallet_id: str,
        tx: UnsignedBtcTransaction,
        change_outputs: frozenset[int],
        txid: str,
        sign: Callable[[], bytes],
    ) -> bytes:
        """`sign()` if `tx` pays exactly the authorised payment plus change (the outputs in
        `change_outputs`, which the signer derived from the wallet's internal chain), at
        no more than the fee cap, from inputs no other operation's signature spent, as
        the operation's first signature or a replacement of it."""
        if any(o.pays is not None for o in tx.outputs):
            return self._sign_btc_batch(operation, wallet_id, tx, change_outputs, txid, sign)
        auth = self.authorised(operation, "bitcoin")
        op = auth.operation_id
        try:
            destination = output_script(auth.destination)
        except CannotPay as exc:
            raise KeyAccessDenied(f"withdrawal {op}: {exc}") from exc
        if len(change_outputs) > 1:
            raise KeyAccessDenied(f"withdrawal {op}: more than one change output")
        payments = [
            (bytes.fromhex(o.script_pubkey_hex), o.value)
            for n, o in enumerate(tx.outputs)
            if n not in change_outputs
        ]
        if payments != [(destination, auth.amount)]:
            raise KeyAccessDenied(f"transaction does not pay exactly withdrawal {op}")
        fee = tx.fee
        if not 0 <= fee <= auth.fee_cap:
            raise KeyAccessDenied(f"withdrawal {op}: fee {fee} sat outside 0..{auth.fee_cap}")
        inputs = tuple((i.txid, i.vout) for i in tx.inputs)
        if len(set(inputs)) != len(inputs):
            raise KeyAccessDenied(f"withdrawal {op}: an input spent twice")
        recorded_payments = ((auth.destination, auth.amount),)
        with self._db.tx(write=True) as conn:
            signer_record.lock(conn, op)
            if signer_record.claimed_by_other(conn, signer_record.member_claim(op), op):
                raise KeyAccessDenied(f"withdrawal {op} is paid by a batch")
            self._claim_request(conn, auth)
            self._velocity(conn, auth)
            self._check_btc_history(conn, auth, tx, txid, fee)
            for txin, vout in inputs:
                owner = signer_record.claim(conn, signer_record.btc_claim(txin, vout), op)
                if owner != op:
                    raise KeyAccessDenied(
                        f"withdrawal {op}: input {txin}:{vout} was signed for {owner}"
                    )
            _within_deadline(tx, op)
            raw = sign()
            _within_deadline(tx, op)
            signer_record.insert(
                conn,
                RecordedSignature(
                    operation_id=op,
                    chain="bitcoin",
                    wallet_id=wallet_id,
                    tx_hash=txid,
                    inputs=inputs,
                    payments=recorded_payments,
                    fee=fee,
                    input_values=tuple(i.value for i in tx.inputs),
                    client_id=auth.holder,  # whose velocity window it counts in
                    asset=auth.asset,
                    intent_hash=auth.intent_hash,
                ),
            )
        return raw

    def _sign_btc_batch(
        self,
        operation: str,
        wallet_id: str,
        tx: UnsignedBtcTransaction,
        change_outputs: frozenset[int],
        txid: str,
        sign: Callable[[], bytes],
    ) -> bytes:
        """`sign()` if every output but the change is exactly the authorised payment of
        the operation it names, each member's share of the fee (`fee_shares`) is within
        its cap, no input or member was signed for another batch or operation, and a
        second signature of the batch is the same transaction or a replacement of it
        for the same members."""
        batch = operation.split("#", 1)[0]
        if not batch.startswith(BATCH_PREFIX):
            raise KeyAccessDenied(f"{batch}: a batch is signed under a batch id")
        # A batch request always carries a near deadline: one replayed from a signing
        # workflow's history, or held back, is never signed after the sender freed the
        # batch's members (it does so only well after the deadline).
        if tx.not_after is None or tx.not_after > datetime.now(UTC) + MAX_SIGNING_WINDOW:
            raise KeyAccessDenied(f"{batch}: a batch request needs a deadline within 30 s")
        if len(change_outputs) > 1:
            raise KeyAccessDenied(f"{batch}: more than one change output")
        paying = []
        for n, out in enumerate(tx.outputs):
            if n in change_outputs:
                if out.pays is not None:
                    raise KeyAccessDenied(f"{batch}: the change output pays no withdrawal")
                continue
            if out.pays is None:
                raise KeyAccessDenied(f"{batch}: output {n} pays no authorised operation")
            paying.append(out)
        auths = [self.authorised(str(o.pays), "bitcoin") for o in paying]
        # Each output names its operation exactly (authorised() reads "X#1" as X: two
        # names of one operation would pay it twice under two member claims).
        members = [a.operation_id for a in auths]
        if [o.pays for o in paying] != members or len(set(members)) != len(members):
            raise KeyAccessDenied(f"{batch}: an operation paid twice, or named inexactly")
        for out, auth in zip(paying, auths, strict=True):
            try:
                destination = output_script(auth.destination)
            except CannotPay as exc:
                raise KeyAccessDenied(f"withdrawal {auth.operation_id}: {exc}") from exc
            if (bytes.fromhex(out.script_pubkey_hex), out.value) != (destination, auth.amount):
                raise KeyAccessDenied(
                    f"{batch}: the output for {auth.operation_id} is not exactly its payment"
                )
        fee = tx.fee
        if fee < 0:
            raise KeyAccessDenied(f"{batch}: the outputs exceed the inputs")
        shares = fee_shares(fee, len(auths))
        for auth, share in zip(auths, shares, strict=True):
            if share > auth.fee_cap:
                raise KeyAccessDenied(
                    f"withdrawal {auth.operation_id}: fee share {share} sat above its cap "
                    f"{auth.fee_cap}"
                )
        inputs = tuple((i.txid, i.vout) for i in tx.inputs)
        if len(set(inputs)) != len(inputs):
            raise KeyAccessDenied(f"{batch}: an input spent twice")
        with self._db.tx(write=True) as conn:
            for op in sorted({batch, *members}):  # one order: two signers never deadlock
                signer_record.lock(conn, op)
            for auth in auths:
                self._claim_request(conn, auth)
            self._batch_velocity(conn, auths, members)
            signed_members = signer_record.batch_members(conn, batch)
            if signed_members and signed_members != set(members):
                raise KeyAccessDenied(f"{batch} was signed for other members")
            for auth, share in zip(auths, shares, strict=True):
                self._check_btc_history(conn, auth, tx, txid, share)
            for op in members:
                owner = signer_record.claim(conn, signer_record.member_claim(op), batch)
                if owner != batch:
                    raise KeyAccessDenied(f"withdrawal {op} is paid by {owner}")
            for txin, vout in inputs:
                owner = signer_record.claim(conn, signer_record.btc_claim(txin, vout), batch)
                if owner != batch:
                    raise KeyAccessDenied(f"{batch}: input {txin}:{vout} was signed for {owner}")
            # The worker gave up on this request by then, and may free the batch's members
            # for other batches: no signature from it after its deadline, by this clock,
            # before signing or after (the unwrap may take long): then nothing commits.
            _within_deadline(tx, batch)
            raw = sign()
            _within_deadline(tx, batch)
            for auth, share in zip(auths, shares, strict=True):
                signer_record.insert(
                    conn,
                    RecordedSignature(
                        operation_id=auth.operation_id,
                        chain="bitcoin",
                        wallet_id=wallet_id,
                        tx_hash=txid,
                        inputs=inputs,
                        payments=((auth.destination, auth.amount),),
                        fee=share,
                        input_values=tuple(i.value for i in tx.inputs),
                        client_id=auth.holder,
                        asset=auth.asset,
                        intent_hash=auth.intent_hash,
                    ),
                )
        return raw

    def _check_btc_history(
        self, conn: Conn, auth: Authorised, tx: UnsignedBtcTransaction, txid: str, fee: int
    ) -> None:
        """Against the operation's earlier signatures: the same intent, every input at
        the value it was signed at, and the same transaction again or a replacement of
        it (`fee`: what this one pays for the operation: the whole fee, or its share)."""
        op = auth.operation_id
        prior = signer_record.signatures(conn, op)
        claimed = {(i.txid, i.vout): i.value for i in tx.inputs}
        for p in prior:
            if p.intent_hash != auth.intent_hash:
                raise KeyAccessDenied(f"withdrawal {op} was signed for another intent")
            # BIP143 commits each input's signature to its own value only: an input
            # claimed at another value than before could pair two signatures into a
            # transaction whose real fee no check saw. Values are pinned at first use.
            for outpoint, value in zip(p.inputs, p.input_values, strict=False):
                if outpoint in claimed and claimed[outpoint] != value:
                    raise KeyAccessDenied(
                        f"withdrawal {op}: input {outpoint[0]}:{outpoint[1]} was signed "
                        f"at {value} sat, not {claimed[outpoint]}"
                    )
        if txid in {p.tx_hash for p in prior}:  # the same transaction again is fine
            return
        inputs = {(i.txid, i.vout) for i in tx.inputs}
        for p in prior:
            # A replacement (BIP125): same payments, every input the signed one spent (so
            # at most one of them can confirm), more fee.
            if p.payments != ((auth.destination, auth.amount),) or not inputs >= set(p.inputs):
                raise KeyAccessDenied(
                    f"withdrawal {op} has a live signature ({p.tx_hash}); this is not a "
                    "replacement of it"
                )
            if fee <= p.fee:
                raise KeyAccessDenied(
                    f"withdrawal {op}: a replacement must pay more than {p.fee} sat"
                )

    def _batch_velocity(self, conn: Conn, auths: list[Authorised], members: list[str]) -> None:
        """The velocity rule of each holder and asset in the batch, its members counted
        together (two members of one client each within the limit may not be together)."""
        groups: dict[tuple[str, str], list[Authorised]] = {}
        for auth in auths:
            groups.setdefault((auth.holder, auth.asset), []).append(auth)
        since = datetime.now(UTC) - VELOCITY_WINDOW
        for (holder, asset), group in sorted(groups.items()):
            limits = [a.velocity_limit for a in group if a.velocity_limit is not None]
            if not limits:
                continue
            signer_record.lock_velocity(conn, holder, asset)
            used = signer_record.signed_since(conn, holder, asset, since, members)
            if used + sum(a.amount for a in group) > min(limits):
                raise KeyAccessDenied(
                    f"{group[0].operation_id}: above {holder}'s daily velocity limit"
                )

    # --- Cosmos -------------------------------------------------------------------------
    def _cosmos_owner(self, wallet_id: str, index: int, address: str) -> str | None:
        """The account whose address `address` (derived by the signer from the wallet's
        key at 0/index) is: looked up by the address itself (insert-only assignments:
        an address belongs to one account for ever), and only if the row names this
        wallet and path. (Looked up by wallet and index alone, a copy of the wallet row
        under another id with a row of its own would name any key anyone's.)"""
        with self._db.tx() as conn:
            row = conn.one(
                "select account_id, wallet_id, change, address_index from deposit_addresses "
                "where address = ? and chain = 'cosmos'",
                (address,),
            )
        if row is None or (str(row[1]), int(row[2]), int(row[3])) != (wallet_id, 0, index):
            return None
        return str(row[0])

    def sign_cosmos(
        self,
        operation: str,
        wallet_id: str,
        index: int,
        address: str,
        tx: DecodedCosmosTx,
        sign: Callable[[], bytes],
    ) -> bytes:
        """`sign()` if `tx` (decoded by the signer from the bytes it signs) is exactly the
        authorised movement from the client's own address `address` (derived by the
        signer): a withdrawal (one MsgSend), a stake (one MsgDelegate) or an unstake (one
        MsgUndelegate) to a validator on the allow-list, or a claim of the client's
        rewards from allowed validators (MsgWithdrawDelegatorReward only, at most once
        per `claim_every`); on this chain, in its denom, within the fee cap, with no
        memo, one sequence per operation for ever."""
        rules = self._cosmos
        if rules is None:
            raise KeyAccessDenied(f"{operation}: this signer signs no Cosmos transactions")
        op_id = operation.split("#", 1)[0]
        if tx.chain_id != rules.chain_id:
            raise KeyAccessDenied(f"{op_id}: chain {tx.chain_id!r}, not {rules.chain_id!r}")
        if tx.fee_denom != rules.denom or not 0 <= tx.fee_amount <= rules.max_fee:
            raise KeyAccessDenied(f"{op_id}: the fee is not at most {rules.max_fee} {rules.denom}")
        if not 0 < tx.gas_limit <= rules.max_gas:
            raise KeyAccessDenied(f"{op_id}: gas {tx.gas_limit} outside 1..{rules.max_gas}")
        if tx.memo or tx.timeout_height:
            raise KeyAccessDenied(f"{op_id}: a memo or a timeout height")
        if not tx.messages:
            raise KeyAccessDenied(f"{op_id}: no message")
        owner = self._cosmos_owner(wallet_id, index, address)
        if owner is None or not owner.startswith("client:"):
            raise KeyAccessDenied(f"{op_id}: not a client's delegator key")
        kinds = {m.kind for m in tx.messages}
        if kinds == {"withdraw_rewards"}:
            return self._sign_cosmos_claim(op_id, wallet_id, address, owner, tx, sign)
        if len(tx.messages) != 1 or tx.messages[0].kind not in _COSMOS_INTENTS:
            raise KeyAccessDenied(f"{op_id}: not one message the platform sends")
        msg = tx.messages[0]
        auth = self.authorised(op_id, "cosmos", (_COSMOS_INTENTS[msg.kind],))
        if owner != accounts.client(auth.client_id or "", auth.asset):
            raise KeyAccessDenied(f"{op_id}: the key is not {auth.client_id}'s own address")
        if not isinstance(msg, SendMsg | DelegateMsg | UndelegateMsg | RedelegateMsg):
            raise KeyAccessDenied(f"{op_id}: not one message the platform sends")
        if msg.denom != rules.denom or msg.amount != auth.amount:
            raise KeyAccessDenied(f"{op_id}: the amount is not the intent's")
        if auth.kind != _COSMOS_INTENTS[msg.kind]:
            raise KeyAccessDenied(f"{op_id}: a {auth.kind} does not authorise a {msg.kind}")
        if isinstance(msg, SendMsg):
            ok = (msg.from_addr, msg.to_addr) == (address, auth.destination)
        elif isinstance(msg, DelegateMsg | UndelegateMsg):
            ok = msg.delegator == address and msg.validator == auth.destination
            # Only a delegation needs an allowed validator: an undelegation leaves the
            # stake's own (verified) validator, which may have been delisted since.
            if isinstance(msg, DelegateMsg) and msg.validator not in rules.validators:
                raise KeyAccessDenied(f"{op_id}: validator {msg.validator} is not allowed")
        elif isinstance(msg, RedelegateMsg):
            # From the position's own validator (verified back to its stake), to the
            # intent's, which must be allowed now.
            ok = (msg.delegator, msg.src_validator, msg.dst_validator) == (
                address,
                auth.source,
                auth.destination,
            ) and bool(auth.source)
            if msg.dst_validator not in rules.validators:
                raise KeyAccessDenied(f"{op_id}: validator {msg.dst_validator} is not allowed")
        else:  # pragma: no cover - _COSMOS_INTENTS names these four only
            ok = False
        if not ok:
            raise KeyAccessDenied(f"transaction does not match {auth.kind} {op_id}")
        if tx.fee_amount > auth.fee_cap:
            raise KeyAccessDenied(f"{op_id}: fee above the cap {auth.fee_cap}")
        with self._db.tx(write=True) as conn:
            signer_record.lock(conn, op_id)
            self._claim_request(conn, auth)
            self._velocity(conn, auth)
            for prior in signer_record.signatures(conn, op_id):
                if prior.intent_hash != auth.intent_hash:
                    raise KeyAccessDenied(f"{op_id} was signed for another intent")
                if (prior.account, prior.nonce) != (address, tx.sequence):
                    raise KeyAccessDenied(
                        f"{op_id} was signed at sequence {prior.nonce} of {prior.account}"
                    )
            self._claim_sequence(conn, op_id, address, tx.sequence)
            raw = sign()
            payments = ((auth.destination, auth.amount),)
            self._record_cosmos(
                conn,
                op_id,
                wallet_id,
                address,
                tx,
                raw,
                payments,
                auth.holder,
                auth.asset,
                auth.intent_hash,
            )
        return raw

    def _record_cosmos(
        self,
        conn: Conn,
        op_id: str,
        wallet_id: str,
        address: str,
        tx: DecodedCosmosTx,
        raw: bytes,
        payments: tuple[tuple[str, int], ...],
        holder: str,
        asset: str,
        intent_hash: str,
    ) -> None:
        """The signature of the Cosmos transaction `raw` (signed at `tx.sequence` of
        `address`), recorded in the same transaction as the checks that allowed it."""
        signer_record.insert(
            conn,
            RecordedSignature(
                operation_id=op_id,
                chain="cosmos",
                wallet_id=wallet_id,
                tx_hash=cosmos_tx_hash(raw),
                inputs=(),
                payments=payments,
                fee=tx.fee_amount,
                account=address,
                nonce=tx.sequence,
                client_id=holder,
                asset=asset,
                intent_hash=intent_hash,
            ),
        )

    def _claim_sequence(self, conn: Conn, op_id: str, address: str, sequence: int) -> None:
        assert self._cosmos is not None
        what = f"cosmos:{self._cosmos.chain_id}:{address}:{sequence}"
        owner = signer_record.claim(conn, what, op_id)
        if owner != op_id:
            raise KeyAccessDenied(f"{op_id}: sequence {sequence} was signed for {owner}")

    def _sign_cosmos_claim(
        self,
        op_id: str,
        wallet_id: str,
        address: str,
        owner: str,
        tx: DecodedCosmosTx,
        sign: Callable[[], bytes],
    ) -> bytes:
        """A claim of the delegator's own rewards: no intent (nothing leaves the client's
        address but the fee), from allowed validators, each once, at most once per
        `claim_every` for the address."""
        rules = self._cosmos
        assert rules is not None
        claims = [m for m in tx.messages if isinstance(m, WithdrawRewardsMsg)]
        if len(claims) != len(tx.messages):
            raise KeyAccessDenied(f"{op_id}: a claim carries other messages")
        if tx.fee_amount > rules.max_claim_fee:
            raise KeyAccessDenied(f"{op_id}: a claim's fee is at most {rules.max_claim_fee}")
        validators = [m.validator for m in claims]
        if any(m.delegator != address for m in claims):
            raise KeyAccessDenied(f"{op_id}: claims another delegator's rewards")
        if len(set(validators)) != len(validators) or not set(validators) <= rules.validators:
            raise KeyAccessDenied(f"{op_id}: claims from a validator not allowed, or twice")
        client = owner.split(":")[1]
        epoch = int(datetime.now(UTC).timestamp() // rules.claim_every.total_seconds())
        with self._db.tx(write=True) as conn:
            signer_record.lock(conn, op_id)
            prior = signer_record.signatures(conn, op_id)
            if any((p.account, p.nonce) != (address, tx.sequence) for p in prior):
                raise KeyAccessDenied(f"{op_id} was signed at another sequence")
            if not prior:
                holder = signer_record.claim(conn, f"cosmos-claim:{address}:{epoch}", op_id)
                if holder != op_id:
                    raise KeyAccessDenied(f"{op_id}: {address} claimed rewards just now")
            self._claim_sequence(conn, op_id, address, tx.sequence)
            raw = sign()
            whose = f"rewards:{client}"  # a claim counts in no velocity window
            self._record_cosmos(
                conn, op_id, wallet_id, address, tx, raw, (), whose, rules.asset, ""
            )
        return raw
