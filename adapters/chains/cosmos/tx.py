"""Cosmos SDK v0.46 transactions (SIGN_MODE_DIRECT) built from our own data, never signed
here: the signer receives the sign-doc, reads it with `decode` (which refuses whatever it
cannot read completely), signs its bytes with secp256k1 (sha256, low S) and hands back
r||s for `assemble`.

Pure functions over cosmpy's generated protos. Amounts are ints in the denom's minor unit
(uatom); on the wire they are the SDK's decimal strings."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from typing import Annotated, Literal, TypeVar

import bech32
import coincurve
from cosmpy.crypto.hashfuncs import ripemd160
from cosmpy.protos.cosmos.bank.v1beta1.tx_pb2 import MsgSend
from cosmpy.protos.cosmos.base.v1beta1.coin_pb2 import Coin
from cosmpy.protos.cosmos.crypto.secp256k1.keys_pb2 import PubKey
from cosmpy.protos.cosmos.distribution.v1beta1.tx_pb2 import MsgWithdrawDelegatorReward
from cosmpy.protos.cosmos.staking.v1beta1.tx_pb2 import (
    MsgBeginRedelegate,
    MsgDelegate,
    MsgUndelegate,
)
from cosmpy.protos.cosmos.tx.signing.v1beta1.signing_pb2 import SignMode
from cosmpy.protos.cosmos.tx.v1beta1.tx_pb2 import (
    AuthInfo,
    Fee,
    ModeInfo,
    SignDoc,
    SignerInfo,
    TxBody,
    TxRaw,
)
from google.protobuf.any_pb2 import Any as ProtoAny
from google.protobuf.message import DecodeError, Message
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

ACCOUNT_PREFIX = "cosmos"
VALIDATOR_PREFIX = "cosmosvaloper"
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
UINT64_MAX = 2**64 - 1
INT_MAX = 2**256 - 1  # sdk.Int holds 256 bits
SEND = "/cosmos.bank.v1beta1.MsgSend"
DELEGATE = "/cosmos.staking.v1beta1.MsgDelegate"
UNDELEGATE = "/cosmos.staking.v1beta1.MsgUndelegate"
REDELEGATE = "/cosmos.staking.v1beta1.MsgBeginRedelegate"
WITHDRAW_REWARDS = "/cosmos.distribution.v1beta1.MsgWithdrawDelegatorReward"
SECP256K1_PUBKEY = "/cosmos.crypto.secp256k1.PubKey"
# ASCII digits, no sign, no leading zero: int() alone takes " 1", "1_0", non-ASCII digits.
_POSITIVE_DECIMAL = re.compile(r"[1-9][0-9]*")

M = TypeVar("M", bound=Message)


class NotAPlatformTx(ValueError):
    """The bytes are not a transaction the platform builds: the signer must not sign."""


def _bech32(hrp: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        got, words = bech32.bech32_decode(value)
        data = None if words is None else bech32.convertbits(words, 5, 8, False)
        if got != hrp or data is None or len(data) not in (20, 32) or value != value.lower():
            raise ValueError(f"not a {hrp}1... address: {value!r}")
        return value

    return check


_FROZEN = ConfigDict(frozen=True, extra="forbid", strict=True)
AccountAddress = Annotated[str, AfterValidator(_bech32(ACCOUNT_PREFIX))]
ValidatorAddress = Annotated[str, AfterValidator(_bech32(VALIDATOR_PREFIX))]
Denom = Annotated[str, Field(pattern=r"^[a-zA-Z][a-zA-Z0-9/:._-]{2,127}$")]  # the SDK's
Amount = Annotated[int, Field(gt=0, le=INT_MAX)]
Uint64 = Annotated[int, Field(ge=0, le=UINT64_MAX)]


class SendMsg(BaseModel):
    """bank MsgSend of one coin."""

    model_config = _FROZEN
    kind: Literal["send"] = "send"
    from_addr: AccountAddress
    to_addr: AccountAddress
    amount: Amount
    denom: Denom

    @property
    def signer(self) -> str:
        return self.from_addr


class DelegateMsg(BaseModel):
    """staking MsgDelegate: bond `amount` to `validator`."""

    model_config = _FROZEN
    kind: Literal["delegate"] = "delegate"
    delegator: AccountAddress
    validator: ValidatorAddress
    amount: Amount
    denom: Denom

    @property
    def signer(self) -> str:
        return self.delegator


class UndelegateMsg(BaseModel):
    """staking MsgUndelegate: start unbonding `amount` from `validator`."""

    model_config = _FROZEN
    kind: Literal["undelegate"] = "undelegate"
    delegator: AccountAddress
    validator: ValidatorAddress
    amount: Amount
    denom: Denom

    @property
    def signer(self) -> str:
        return self.delegator


class RedelegateMsg(BaseModel):
    """staking MsgBeginRedelegate: move `amount` of bonded stake from one validator to
    another without unbonding."""

    model_config = _FROZEN
    kind: Literal["redelegate"] = "redelegate"
    delegator: AccountAddress
    src_validator: ValidatorAddress
    dst_validator: ValidatorAddress
    amount: Amount
    denom: Denom

    @property
    def signer(self) -> str:
        return self.delegator


class WithdrawRewardsMsg(BaseModel):
    """distribution MsgWithdrawDelegatorReward: pay out the delegation's rewards to the
    delegator's withdraw address (the delegator unless it set another)."""

    model_config = _FROZEN
    kind: Literal["withdraw_rewards"] = "withdraw_rewards"
    delegator: AccountAddress
    validator: ValidatorAddress

    @property
    def signer(self) -> str:
        return self.delegator


PlatformMsg = SendMsg | DelegateMsg | UndelegateMsg | RedelegateMsg | WithdrawRewardsMsg
CosmosMsg = Annotated[PlatformMsg, Field(discriminator="kind")]


class UnsignedCosmosTx(BaseModel):
    """A SIGN_MODE_DIRECT sign-doc's fields: the exact bytes the signature commits to."""

    model_config = _FROZEN
    body_bytes_hex: str = Field(pattern=r"^(?:[0-9a-f]{2})+$")
    auth_info_bytes_hex: str = Field(pattern=r"^(?:[0-9a-f]{2})+$")
    chain_id: str = Field(min_length=1, max_length=50)
    account_number: Uint64


class DecodedCosmosTx(BaseModel):
    """Everything a transaction does, read from every byte of its body and auth info."""

    model_config = _FROZEN
    messages: tuple[CosmosMsg, ...] = Field(min_length=1)
    signer: AccountAddress = Field(description="the public key's address; every message's")
    public_key: bytes = Field(min_length=33, max_length=33)
    sequence: Uint64
    account_number: Uint64
    chain_id: str
    fee_amount: Amount
    fee_denom: Denom
    gas_limit: Annotated[int, Field(gt=0, le=UINT64_MAX)]
    memo: str
    timeout_height: Uint64 = Field(description="0: none; else the last height it may enter")


# --- message builders ---------------------------------------------------------------
def msg_send(from_addr: str, to_addr: str, amount: int, denom: str) -> SendMsg:
    return SendMsg(from_addr=from_addr, to_addr=to_addr, amount=amount, denom=denom)


def msg_delegate(delegator: str, validator: str, amount: int, denom: str) -> DelegateMsg:
    return DelegateMsg(delegator=delegator, validator=validator, amount=amount, denom=denom)


def msg_undelegate(delegator: str, validator: str, amount: int, denom: str) -> UndelegateMsg:
    return UndelegateMsg(delegator=delegator, validator=validator, amount=amount, denom=denom)


def msg_redelegate(
    delegator: str, src_validator: str, dst_validator: str, amount: int, denom: str
) -> RedelegateMsg:
    return RedelegateMsg(
        delegator=delegator,
        src_validator=src_validator,
        dst_validator=dst_validator,
        amount=amount,
        denom=denom,
    )


def msg_withdraw_rewards(delegator: str, validator: str) -> WithdrawRewardsMsg:
    return WithdrawRewardsMsg(delegator=delegator, validator=validator)


def address_of(public_key: bytes, prefix: str = ACCOUNT_PREFIX) -> str:
    """The account address of a 33-byte compressed secp256k1 key: ripemd160(sha256(key))."""
    words = bech32.convertbits(ripemd160(hashlib.sha256(public_key).digest()), 8, 5, True)
    assert words is not None  # 8 -> 5 bits with padding always converts
    return str(bech32.bech32_encode(prefix, words))


def module_address(name: str, prefix: str = ACCOUNT_PREFIX) -> str:
    """A module account's address (the SDK's authtypes.NewModuleAddress: sha256(name)[:20]),
    e.g. the staking module's "bonded_tokens_pool" and "not_bonded_tokens_pool"."""
    words = bech32.convertbits(hashlib.sha256(name.encode()).digest()[:20], 8, 5, True)
    assert words is not None
    return str(bech32.bech32_encode(prefix, words))


# --- the transaction -------------------------------------------------------------------
def build(
    messages: Sequence[PlatformMsg],
    public_key: bytes,
    sequence: int,
    account_number: int,
    chain_id: str,
    fee_amount: int,
    denom: str,
    gas_limit: int,
    memo: str = "",
    timeout_height: int = 0,
) -> UnsignedCosmosTx:
    """The unsigned transaction: one SIGN_MODE_DIRECT signer (`public_key`, 33-byte
    compressed secp256k1) paying `fee_amount` `denom`. NotAPlatformTx if `decode` would
    refuse it (so the signer is never sent what it will not sign)."""
    try:
        body = TxBody(
            messages=[_pack(_to_proto(m)) for m in messages],
            memo=memo,
            timeout_height=timeout_height,
        )
        auth_info = AuthInfo(
            signer_infos=[
                SignerInfo(
                    public_key=_pack(PubKey(key=public_key)),
                    mode_info=ModeInfo(single=ModeInfo.Single(mode=SignMode.SIGN_MODE_DIRECT)),
                    sequence=sequence,
                )
            ],
            fee=Fee(amount=[Coin(denom=denom, amount=str(fee_amount))], gas_limit=gas_limit),
        )
        unsigned = UnsignedCosmosTx(
            body_bytes_hex=body.SerializeToString().hex(),
            auth_info_bytes_hex=auth_info.SerializeToString().hex(),
            chain_id=chain_id,
            account_number=account_number,
        )
    except (TypeError, ValueError) as exc:  # protobuf's range checks, pydantic's
        raise NotAPlatformTx(f"cannot build: {exc}") from exc
    decode(unsigned)
    return unsigned


def sign_doc(u: UnsignedCosmosTx) -> bytes:
    """The cosmos.tx.v1beta1.SignDoc bytes a SIGN_MODE_DIRECT signature is over (the
    signer hashes them with sha256)."""
    return bytes(
        SignDoc(
            body_bytes=bytes.fromhex(u.body_bytes_hex),
            auth_info_bytes=bytes.fromhex(u.auth_info_bytes_hex),
            chain_id=u.chain_id,
            account_number=u.account_number,
        ).SerializeToString()
    )


def parse_sign_doc(doc: bytes) -> UnsignedCosmosTx:
    """The inverse of `sign_doc`; NotAPlatformTx unless `doc` is exactly one's bytes."""
    parsed = _exact(SignDoc, doc, "sign doc")
    try:
        return UnsignedCosmosTx(
            body_bytes_hex=parsed.body_bytes.hex(),
            auth_info_bytes_hex=parsed.auth_info_bytes.hex(),
            chain_id=parsed.chain_id,
            account_number=parsed.account_number,
        )
    except ValidationError as exc:
        raise NotAPlatformTx(f"sign doc: {exc}") from exc


def assemble(u: UnsignedCosmosTx, signature: bytes) -> bytes:
    """The TxRaw bytes to broadcast. ValueError unless `signature` is 64 bytes r||s with
    low S (the SDK refuses high-S signatures as malleable)."""
    if len(signature) != 64:
        raise ValueError(f"a secp256k1 signature is 64 bytes r||s, not {len(signature)}")
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    if not (0 < r < SECP256K1_ORDER and 0 < s <= SECP256K1_ORDER // 2):
        raise ValueError("not a low-S secp256k1 signature: the chain refuses it")
    return _raw(u, signature)


def simulation_tx(u: UnsignedCosmosTx) -> bytes:
    """TxRaw bytes for the node's Simulate: an all-zero signature holds the slot (the
    SDK skips signature checks when simulating, but not the sequence check)."""
    return _raw(u, bytes(64))


def tx_hash(raw: bytes) -> str:
    """The chain's name for a transaction: uppercase hex sha256 of its TxRaw bytes."""
    return hashlib.sha256(raw).hexdigest().upper()


def decode(u: UnsignedCosmosTx) -> DecodedCosmosTx:
    """What `u` does, for the signer's checks. NotAPlatformTx for anything the platform
    does not build: unknown message types, extension options, fields SDK v0.46 lacks, a
    tip, fee payer or granter, other than one SIGN_MODE_DIRECT secp256k1 signer, other than
    one fee coin or one coin per message, amounts that are not positive plain decimals, a
    message another address must sign, and bytes that do not re-serialize exactly (unknown
    fields, repeated or out-of-order fields, non-minimal varints)."""
    body = _exact(TxBody, bytes.fromhex(u.body_bytes_hex), "tx body")
    if len(body.extension_options) or len(body.non_critical_extension_options):
        raise NotAPlatformTx("the body has extension options")
    if body.unordered or body.HasField("timeout_timestamp"):
        raise NotAPlatformTx("the body sets fields SDK v0.46 does not have")
    if not body.messages:
        raise NotAPlatformTx("no messages")
    auth_info = _exact(AuthInfo, bytes.fromhex(u.auth_info_bytes_hex), "auth info")
    if auth_info.HasField("tip"):
        raise NotAPlatformTx("the auth info has a tip")
    if len(auth_info.signer_infos) != 1:
        raise NotAPlatformTx(f"{len(auth_info.signer_infos)} signers; the platform uses one")
    signer_info = auth_info.signer_infos[0]
    mode = signer_info.mode_info
    if mode.WhichOneof("sum") != "single" or mode.single.mode != SignMode.SIGN_MODE_DIRECT:
        raise NotAPlatformTx("the signer does not sign in SIGN_MODE_DIRECT")
    if signer_info.public_key.type_url != SECP256K1_PUBKEY:
        raise NotAPlatformTx(f"signer key type {signer_info.public_key.type_url!r}")
    public_key = bytes(_exact(PubKey, signer_info.public_key.value, "public key").key)
    _check_public_key(public_key)
    if not auth_info.HasField("fee"):
        raise NotAPlatformTx("no fee")
    fee = auth_info.fee
    if fee.payer or fee.granter:
        raise NotAPlatformTx("the fee has a payer or a granter")
    if len(fee.amount) != 1:
        raise NotAPlatformTx(f"{len(fee.amount)} fee coins; the platform pays one")
    fee_amount, fee_denom = _coin(fee.amount[0], "fee")
    try:
        messages = tuple(_from_any(m) for m in body.messages)
        decoded = DecodedCosmosTx(
            messages=messages,
            signer=address_of(public_key),
            public_key=public_key,
            sequence=signer_info.sequence,
            account_number=u.account_number,
            chain_id=u.chain_id,
            fee_amount=fee_amount,
            fee_denom=fee_denom,
            gas_limit=fee.gas_limit,
            memo=body.memo,
            timeout_height=body.timeout_height,
        )
    except ValidationError as exc:
        raise NotAPlatformTx(str(exc)) from exc
    for m in decoded.messages:
        if m.signer != decoded.signer:
            raise NotAPlatformTx(f"a {m.kind} message signed by {m.signer}, not the signer")
    return decoded


# --- protobuf --------------------------------------------------------------------------
def _raw(u: UnsignedCosmosTx, signature: bytes) -> bytes:
    return bytes(
        TxRaw(
            body_bytes=bytes.fromhex(u.body_bytes_hex),
            auth_info_bytes=bytes.fromhex(u.auth_info_bytes_hex),
            signatures=[signature],
        ).SerializeToString()
    )


def _pack(msg: Message) -> ProtoAny:
    # cosmpy's Any.Pack(..., type_url_prefix="/") gives the same: "/" + the full name.
    return ProtoAny(type_url="/" + msg.DESCRIPTOR.full_name, value=msg.SerializeToString())


def _exact(cls: type[M], data: bytes, what: str) -> M:
    """`data` parsed as `cls`; NotAPlatformTx unless re-serializing the fields we know gives
    `data` back byte for byte (so nothing in it goes unread)."""
    parsed = cls()
    try:
        parsed.ParseFromString(data)
    except DecodeError as exc:
        raise NotAPlatformTx(f"{what}: not a {cls.DESCRIPTOR.full_name}") from exc
    parsed.DiscardUnknownFields()
    if parsed.SerializeToString(deterministic=True) != data:
        raise NotAPlatformTx(f"{what}: unknown fields or a non-canonical encoding")
    return parsed


def _check_public_key(key: bytes) -> None:
    if len(key) != 33 or key[0] not in (2, 3):
        raise NotAPlatformTx("the signer key is not a 33-byte compressed secp256k1 key")
    try:
        coincurve.PublicKey(key)
    except ValueError as exc:
        raise NotAPlatformTx("the signer key is not a point on secp256k1") from exc


def _coin(coin: Coin, what: str) -> tuple[int, str]:
    if not _POSITIVE_DECIMAL.fullmatch(coin.amount):
        raise NotAPlatformTx(f"{what}: amount {coin.amount!r} is not a positive integer")
    return int(coin.amount), str(coin.denom)


def _one_coin(coins: Sequence[Coin], what: str) -> tuple[int, str]:
    if len(coins) != 1:
        raise NotAPlatformTx(f"{what}: {len(coins)} coins; the platform sends one")
    return _coin(coins[0], what)


def _to_proto(m: PlatformMsg) -> Message:
    proto: Message
    match m:
        case SendMsg():
            proto = MsgSend(
                from_address=m.from_addr,
                to_address=m.to_addr,
                amount=[Coin(denom=m.denom, amount=str(m.amount))],
            )
        case DelegateMsg():
            proto = MsgDelegate(
                delegator_address=m.delegator,
                validator_address=m.validator,
                amount=Coin(denom=m.denom, amount=str(m.amount)),
            )
        case UndelegateMsg():
            proto = MsgUndelegate(
                delegator_address=m.delegator,
                validator_address=m.validator,
                amount=Coin(denom=m.denom, amount=str(m.amount)),
            )
        case RedelegateMsg():
            proto = MsgBeginRedelegate(
                delegator_address=m.delegator,
                validator_src_address=m.src_validator,
                validator_dst_address=m.dst_validator,
                amount=Coin(denom=m.denom, amount=str(m.amount)),
            )
        case WithdrawRewardsMsg():
            proto = MsgWithdrawDelegatorReward(
                delegator_address=m.delegator, validator_address=m.validator
            )
        case _:
            raise TypeError(f"not a platform message: {type(m).__name__}")
    return proto


def _from_any(packed: ProtoAny) -> PlatformMsg:
    url, value = packed.type_url, packed.value
    if url == SEND:
        send = _exact(MsgSend, value, "MsgSend")
        amount, denom = _one_coin(send.amount, "MsgSend")
        return SendMsg(
            from_addr=send.from_address, to_addr=send.to_address, amount=amount, denom=denom
        )
    if url in (DELEGATE, UNDELEGATE):
        staking = _exact(MsgDelegate if url == DELEGATE else MsgUndelegate, value, url[1:])
        amount, denom = _single(staking, url[1:])
        model = DelegateMsg if url == DELEGATE else UndelegateMsg
        return model(
            delegator=staking.delegator_address,
            validator=staking.validator_address,
            amount=amount,
            denom=denom,
        )
    if url == REDELEGATE:
        move = _exact(MsgBeginRedelegate, value, "MsgBeginRedelegate")
        amount, denom = _single(move, "MsgBeginRedelegate")
        return RedelegateMsg(
            delegator=move.delegator_address,
            src_validator=move.validator_src_address,
            dst_validator=move.validator_dst_address,
            amount=amount,
            denom=denom,
        )
    if url == WITHDRAW_REWARDS:
        claim = _exact(MsgWithdrawDelegatorReward, value, "MsgWithdrawDelegatorReward")
        return WithdrawRewardsMsg(
            delegator=claim.delegator_address, validator=claim.validator_address
        )
    raise NotAPlatformTx(f"message type {url!r} is not one the platform sends")


def _single(msg: MsgDelegate | MsgUndelegate | MsgBeginRedelegate, what: str) -> tuple[int, str]:
    """The staking messages' one Coin (a message field: absent is not zero)."""
    if not msg.HasField("amount"):
        raise NotAPlatformTx(f"{what}: no amount")
    return _coin(msg.amount, what)
