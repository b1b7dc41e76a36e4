"""Cosmos transactions (adapters/chains/cosmos/tx.py): what `build` makes, `decode` reads
back exactly; the sign-doc is the one cosmpy signs; and `decode` refuses every
transaction the platform does not build, however small the difference."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from cosmpy.aerial.client.bank import create_bank_send_msg
from cosmpy.aerial.client.distribution import create_withdraw_delegator_reward
from cosmpy.aerial.client.staking import (
    create_delegate_msg,
    create_redelegate_msg,
    create_undelegate_msg,
)
from cosmpy.aerial.tx import SigningCfg, Transaction, TxFee
from cosmpy.crypto.keypairs import PrivateKey, PublicKey
from cosmpy.protos.cosmos.authz.v1beta1.tx_pb2 import MsgExec
from cosmpy.protos.cosmos.bank.v1beta1.tx_pb2 import MsgSend
from cosmpy.protos.cosmos.base.v1beta1.coin_pb2 import Coin
from cosmpy.protos.cosmos.crypto.ed25519.keys_pb2 import PubKey as Ed25519PubKey
from cosmpy.protos.cosmos.crypto.multisig.v1beta1.multisig_pb2 import CompactBitArray
from cosmpy.protos.cosmos.crypto.secp256k1.keys_pb2 import PubKey
from cosmpy.protos.cosmos.staking.v1beta1.tx_pb2 import MsgDelegate
from cosmpy.protos.cosmos.tx.signing.v1beta1.signing_pb2 import SignMode
from cosmpy.protos.cosmos.tx.v1beta1.tx_pb2 import AuthInfo, ModeInfo, SignDoc, Tip, TxBody
from google.protobuf.any_pb2 import Any as ProtoAny
from pydantic import ValidationError

from adapters.chains.cosmos.tx import (
    SECP256K1_ORDER,
    VALIDATOR_PREFIX,
    DecodedCosmosTx,
    NotAPlatformTx,
    PlatformMsg,
    UnsignedCosmosTx,
    address_of,
    assemble,
    build,
    decode,
    msg_delegate,
    msg_redelegate,
    msg_send,
    msg_undelegate,
    msg_withdraw_rewards,
    parse_sign_doc,
    sign_doc,
    tx_hash,
)

CHAIN = "custody-pos-1"
DENOM = "uatom"
KEY = PrivateKey(hashlib.sha256(b"custody test key").digest())
PUB = KEY.public_key.public_key_bytes
ME = address_of(PUB)
OTHER = address_of(PrivateKey(hashlib.sha256(b"someone else").digest()).public_key.public_key_bytes)
VAL_A = address_of(b"validator a", VALIDATOR_PREFIX)  # any 20 bytes make an operator address
VAL_B = address_of(b"validator b", VALIDATOR_PREFIX)
SEQ, ACCOUNT, FEE, GAS = 7, 42, 2000, 200_000

MESSAGES: dict[str, PlatformMsg] = {
    "send": msg_send(ME, OTHER, 1_234_567, DENOM),
    "delegate": msg_delegate(ME, VAL_A, 10**18, DENOM),
    "undelegate": msg_undelegate(ME, VAL_A, 1, DENOM),
    "redelegate": msg_redelegate(ME, VAL_A, VAL_B, 500_000, DENOM),
    "withdraw_rewards": msg_withdraw_rewards(ME, VAL_A),
}
COSMPY = {  # the same messages, as cosmpy's own helpers make them
    "send": lambda: create_bank_send_msg(ME, OTHER, 1_234_567, DENOM),
    "delegate": lambda: create_delegate_msg(ME, VAL_A, 10**18, DENOM),
    "undelegate": lambda: create_undelegate_msg(ME, VAL_A, 1, DENOM),
    "redelegate": lambda: create_redelegate_msg(ME, VAL_A, VAL_B, 500_000, DENOM),
    "withdraw_rewards": lambda: create_withdraw_delegator_reward(ME, VAL_A),
}


def _build(messages: list[Any], memo: str = "") -> UnsignedCosmosTx:
    return build(messages, PUB, SEQ, ACCOUNT, CHAIN, FEE, DENOM, GAS, memo)


def _parts(u: UnsignedCosmosTx) -> tuple[Any, Any]:
    body, auth = TxBody(), AuthInfo()
    body.ParseFromString(bytes.fromhex(u.body_bytes_hex))
    auth.ParseFromString(bytes.fromhex(u.auth_info_bytes_hex))
    return body, auth


def _with(u: UnsignedCosmosTx, body: Any = None, auth: Any = None) -> UnsignedCosmosTx:
    return u.model_copy(
        update={
            "body_bytes_hex": body.SerializeToString().hex() if body else u.body_bytes_hex,
            "auth_info_bytes_hex": auth.SerializeToString().hex()
            if auth
            else u.auth_info_bytes_hex,
        }
    )


def _any(msg: Any) -> ProtoAny:
    return ProtoAny(type_url="/" + msg.DESCRIPTOR.full_name, value=msg.SerializeToString())


# --- build and decode ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(MESSAGES))
def test_build_then_decode_gives_back_each_message_kind(kind: str) -> None:
    message = MESSAGES[kind]
    decoded = decode(_build([message], memo=f"op-{kind}:1"))
    assert decoded == DecodedCosmosTx(
        messages=(message,),
        signer=ME,
        public_key=PUB,
        sequence=SEQ,
        account_number=ACCOUNT,
        chain_id=CHAIN,
        fee_amount=FEE,
        fee_denom=DENOM,
        gas_limit=GAS,
        memo=f"op-{kind}:1",
        timeout_height=0,
    )
    assert decoded.messages[0].kind == kind


def test_all_kinds_in_one_transaction_decode_in_order() -> None:
    messages = list(MESSAGES.values())
    assert list(decode(_build(messages)).messages) == messages


def test_timeout_height_is_read_back() -> None:
    u = build([MESSAGES["send"]], PUB, SEQ, ACCOUNT, CHAIN, FEE, DENOM, GAS, timeout_height=99)
    assert decode(u).timeout_height == 99


def test_the_decoded_transaction_is_frozen() -> None:
    decoded = decode(_build([MESSAGES["send"]]))
    with pytest.raises(ValidationError):
        decoded.fee_amount = 1


@pytest.mark.parametrize(
    "make",
    [
        lambda: msg_send(ME, OTHER, 1.0, DENOM),  # type: ignore[arg-type]  # even a whole float
        lambda: msg_send(ME, OTHER, True, DENOM),
        lambda: msg_send(ME, OTHER, 0, DENOM),
        lambda: msg_send(ME, OTHER, -5, DENOM),
        lambda: msg_send(ME, OTHER, 2**256, DENOM),
        lambda: msg_send(ME, VAL_A, 1, DENOM),  # a validator is not an account
        lambda: msg_send(ME, OTHER.upper(), 1, DENOM),
        lambda: msg_send(ME, OTHER[:-1] + ("q" if OTHER[-1] != "q" else "p"), 1, DENOM),
        lambda: msg_delegate(ME, OTHER, 1, DENOM),
        lambda: msg_delegate(ME, VAL_A, 1, "u"),  # the SDK's denoms have 3 to 128 chars
    ],
)
def test_builders_refuse_what_is_not_an_amount_or_an_address(make: Callable[[], Any]) -> None:
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize(
    "change",
    [
        {"fee_amount": 0},
        {"fee_amount": 1.5},
        {"gas_limit": 0},
        {"sequence": -1},
        {"public_key": PUB[1:]},
        {"public_key": b"\x02" + bytes(32)},  # not on the curve
        {"public_key": KEY.public_key._verifying_key.to_string("uncompressed")},
    ],
)
def test_build_refuses_what_decode_would(change: dict[str, Any]) -> None:
    args: dict[str, Any] = {
        "messages": [MESSAGES["send"]],
        "public_key": PUB,
        "sequence": SEQ,
        "account_number": ACCOUNT,
        "chain_id": CHAIN,
        "fee_amount": FEE,
        "denom": DENOM,
        "gas_limit": GAS,
    }
    with pytest.raises(NotAPlatformTx):
        build(**{**args, **change})


def test_build_refuses_a_message_another_address_signs() -> None:
    with pytest.raises(NotAPlatformTx, match="not the signer"):
        _build([msg_send(OTHER, ME, 1, DENOM)])


# --- the sign-doc and the signature ------------------------------------------------------
@pytest.mark.parametrize("kinds", [[k] for k in MESSAGES] + [list(MESSAGES)])
def test_sign_doc_and_tx_bytes_are_cosmpys(kinds: list[str]) -> None:
    u = _build([MESSAGES[k] for k in kinds], memo="m")
    theirs = Transaction()
    for kind in kinds:
        theirs.add_message(COSMPY[kind]())
    theirs.seal(
        SigningCfg.direct(KEY.public_key, SEQ),
        fee=TxFee(amount=f"{FEE}{DENOM}", gas_limit=GAS),
        memo="m",
    )
    theirs.sign(KEY, CHAIN, ACCOUNT, deterministic=True)
    theirs.complete()

    doc = SignDoc(
        body_bytes=theirs.tx.body.SerializeToString(),
        auth_info_bytes=theirs.tx.auth_info.SerializeToString(),
        chain_id=CHAIN,
        account_number=ACCOUNT,
    ).SerializeToString()
    assert sign_doc(u) == doc
    # RFC 6979 signatures: the same bytes signed give the same signature, and the TxRaw is
    # byte for byte what cosmpy broadcasts.
    ours = KEY.sign(sign_doc(u), deterministic=True, canonicalise=True)
    assert ours == theirs.tx.signatures[0]
    assert assemble(u, ours) == theirs.tx.SerializeToString()


def test_a_signature_over_the_sign_doc_verifies_under_the_public_key() -> None:
    u = _build([MESSAGES["delegate"]])
    signature = KEY.sign(sign_doc(u), deterministic=False, canonicalise=True)
    assert len(signature) == 64
    assert int.from_bytes(signature[32:], "big") <= SECP256K1_ORDER // 2
    key = PublicKey(decode(u).public_key)
    assert key.verify(sign_doc(u), signature)
    assert not key.verify(sign_doc(u.model_copy(update={"account_number": 43})), signature)
    assert not PublicKey(PrivateKey().public_key.public_key_bytes).verify(sign_doc(u), signature)


def test_assemble_refuses_other_than_64_bytes_low_s() -> None:
    u = _build([MESSAGES["send"]])
    signature = KEY.sign(sign_doc(u), canonicalise=True)
    r, s = signature[:32], int.from_bytes(signature[32:], "big")
    high_s = r + (SECP256K1_ORDER - s).to_bytes(32, "big")
    for bad in (signature[:63], signature + b"\x00", high_s, bytes(64)):
        with pytest.raises(ValueError):
            assemble(u, bad)


def test_parse_sign_doc_is_the_inverse_and_exact() -> None:
    u = _build([MESSAGES["redelegate"]])
    assert parse_sign_doc(sign_doc(u)) == u
    with pytest.raises(NotAPlatformTx):
        parse_sign_doc(sign_doc(u) + b"\x28\x01")  # an unknown field 5
    with pytest.raises(NotAPlatformTx):
        parse_sign_doc(sign_doc(u)[:-3])


def test_tx_hash_is_uppercase_hex_sha256() -> None:
    raw = assemble(_build([MESSAGES["send"]]), KEY.sign(sign_doc(_build([MESSAGES["send"]]))))
    assert tx_hash(raw) == hashlib.sha256(raw).hexdigest().upper()
    assert len(tx_hash(raw)) == 64 and tx_hash(raw) == tx_hash(raw).upper()


# --- what decode refuses -----------------------------------------------------------------
def _tamper_body(change: Callable[[Any], None]) -> Callable[[UnsignedCosmosTx], UnsignedCosmosTx]:
    def apply(u: UnsignedCosmosTx) -> UnsignedCosmosTx:
        body, _ = _parts(u)
        change(body)
        return _with(u, body=body)

    return apply


def _tamper_auth(change: Callable[[Any], None]) -> Callable[[UnsignedCosmosTx], UnsignedCosmosTx]:
    def apply(u: UnsignedCosmosTx) -> UnsignedCosmosTx:
        _, auth = _parts(u)
        change(auth)
        return _with(u, auth=auth)

    return apply


def _raw_body(suffix: bytes) -> Callable[[UnsignedCosmosTx], UnsignedCosmosTx]:
    return lambda u: u.model_copy(update={"body_bytes_hex": u.body_bytes_hex + suffix.hex()})


def _raw_auth(suffix: bytes) -> Callable[[UnsignedCosmosTx], UnsignedCosmosTx]:
    return lambda u: u.model_copy(
        update={"auth_info_bytes_hex": u.auth_info_bytes_hex + suffix.hex()}
    )


def _message_value(value: bytes) -> Callable[[Any], None]:
    def change(body: Any) -> None:
        body.messages[0].value = value

    return change


def _send_amount(amount: str) -> Callable[[Any], None]:
    return _message_value(
        MsgSend(
            from_address=ME, to_address=OTHER, amount=[Coin(denom=DENOM, amount=amount)]
        ).SerializeToString()
    )


def _fee_amount(amount: str) -> Callable[[Any], None]:
    def change(auth: Any) -> None:
        auth.fee.amount[0].amount = amount

    return change


def _second_signer(auth: Any) -> None:
    auth.signer_infos.append(auth.signer_infos[0])


def _second_fee_coin(auth: Any) -> None:
    auth.fee.amount.append(Coin(denom="stake", amount="1"))


def _no_fee_coin(auth: Any) -> None:
    del auth.fee.amount[:]


def _granter(auth: Any) -> None:
    auth.fee.granter = OTHER


def _payer(auth: Any) -> None:
    auth.fee.payer = OTHER


def _tip(auth: Any) -> None:
    auth.tip.CopyFrom(Tip(amount=[Coin(denom=DENOM, amount="1")], tipper=ME))


def _amino_json(auth: Any) -> None:
    auth.signer_infos[0].mode_info.single.mode = SignMode.SIGN_MODE_LEGACY_AMINO_JSON


def _multi(auth: Any) -> None:
    single = ModeInfo(single=ModeInfo.Single(mode=SignMode.SIGN_MODE_DIRECT))
    auth.signer_infos[0].mode_info.CopyFrom(
        ModeInfo(
            multi=ModeInfo.Multi(
                bitarray=CompactBitArray(extra_bits_stored=1, elems=b"\x80"),
                mode_infos=[single],
            )
        )
    )


def _ed25519_key(auth: Any) -> None:
    auth.signer_infos[0].public_key.CopyFrom(_any(Ed25519PubKey(key=bytes(32))))


def _off_curve_key(auth: Any) -> None:
    auth.signer_infos[0].public_key.CopyFrom(_any(PubKey(key=b"\x02" + b"\xff" * 32)))


def _extension(field: str) -> Callable[[Any], None]:
    def change(body: Any) -> None:
        getattr(body, field).append(_any(Coin(denom=DENOM, amount="1")))

    return change


def _hidden_exec(body: Any) -> None:
    # authz MsgExec wrapping a send: the send would execute under someone else's grant.
    inner = create_bank_send_msg(OTHER, ME, 10**9, DENOM)
    body.messages.append(_any(MsgExec(grantee=ME, msgs=[_any(inner)])))


def _unordered(body: Any) -> None:
    body.unordered = True


def _timeout_timestamp(body: Any) -> None:
    body.timeout_timestamp.seconds = 1


def _no_messages(body: Any) -> None:
    del body.messages[:]


def _wrong_type_url(body: Any) -> None:
    body.messages[0].type_url = "type.googleapis.com/cosmos.bank.v1beta1.MsgSend"


def _delegate_without_amount(body: Any) -> None:
    body.messages[0].CopyFrom(_any(MsgDelegate(delegator_address=ME, validator_address=VAL_A)))


def _send_two_coins(body: Any) -> None:
    coins = [Coin(denom=DENOM, amount="1"), Coin(denom="stake", amount="1")]
    msg = MsgSend(from_address=ME, to_address=OTHER, amount=coins)
    body.messages[0].value = msg.SerializeToString()


def _send_to_validator(body: Any) -> None:
    msg = MsgSend(from_address=ME, to_address=VAL_A, amount=[Coin(denom=DENOM, amount="1")])
    body.messages[0].value = msg.SerializeToString()


def _send_from_other(body: Any) -> None:
    msg = MsgSend(from_address=OTHER, to_address=ME, amount=[Coin(denom=DENOM, amount="1")])
    body.messages[0].value = msg.SerializeToString()


def _memo_first(u: UnsignedCosmosTx) -> UnsignedCosmosTx:
    body, _ = _parts(u)
    swapped = TxBody(memo=body.memo).SerializeToString()
    swapped += TxBody(messages=body.messages).SerializeToString()
    again, _ = _parts(u.model_copy(update={"body_bytes_hex": swapped.hex()}))
    assert again == body  # the same fields, in another order
    return u.model_copy(update={"body_bytes_hex": swapped.hex()})


def _unknown_field_in_message(body: Any) -> None:
    body.messages[0].value = body.messages[0].value + b"\xa0\x06\x01"  # field 100, varint 1


REFUSED = {
    # bytes the decoder would not have read
    "unknown body field": _raw_body(b"\xa0\x06\x01"),
    "unknown auth info field": _raw_auth(b"\xa0\x06\x01"),
    "unknown field inside a message": _tamper_body(_unknown_field_in_message),
    "memo encoded twice (last wins)": _raw_body(b"\x12\x04evil"),
    "the memo before the messages (out of order)": _memo_first,
    "a default value encoded": _raw_body(b"\x18\x00"),
    "truncated body": lambda u: u.model_copy(update={"body_bytes_hex": u.body_bytes_hex[:-2]}),
    # messages
    "no messages": _tamper_body(_no_messages),
    "unknown message type (authz exec)": _tamper_body(_hidden_exec),
    "type url with a host": _tamper_body(_wrong_type_url),
    "two coins in a send": _tamper_body(_send_two_coins),
    "a send to a validator address": _tamper_body(_send_to_validator),
    "a send someone else signs": _tamper_body(_send_from_other),
    "a delegate without amount": _tamper_body(_delegate_without_amount),
    "amount 1.5": _tamper_body(_send_amount("1.5")),
    "amount 01": _tamper_body(_send_amount("01")),
    "amount -1": _tamper_body(_send_amount("-1")),
    "amount +1": _tamper_body(_send_amount("+1")),
    "amount with a space": _tamper_body(_send_amount(" 1")),
    "amount 1_000": _tamper_body(_send_amount("1_000")),
    "amount 1e6": _tamper_body(_send_amount("1e6")),
    "amount in non-ASCII digits": _tamper_body(_send_amount("\u0661\u0662")),
    "amount 0": _tamper_body(_send_amount("0")),
    "amount over 256 bits": _tamper_body(_send_amount(str(2**256))),
    # body options
    "extension options": _tamper_body(_extension("extension_options")),
    "non-critical extension options": _tamper_body(_extension("non_critical_extension_options")),
    "unordered (not in SDK 0.46)": _tamper_body(_unordered),
    "timeout timestamp (not in SDK 0.46)": _tamper_body(_timeout_timestamp),
    # signers and fees
    "two signers": _tamper_auth(_second_signer),
    "amino json mode": _tamper_auth(_amino_json),
    "multisig mode": _tamper_auth(_multi),
    "ed25519 key": _tamper_auth(_ed25519_key),
    "key off the curve": _tamper_auth(_off_curve_key),
    "a fee granter": _tamper_auth(_granter),
    "a fee payer": _tamper_auth(_payer),
    "a tip": _tamper_auth(_tip),
    "two fee coins": _tamper_auth(_second_fee_coin),
    "no fee coin": _tamper_auth(_no_fee_coin),
    "fee 2000.0": _tamper_auth(_fee_amount("2000.0")),
    "fee 0": _tamper_auth(_fee_amount("0")),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_decode_refuses(case: str) -> None:
    u = _build([MESSAGES["send"]], memo="op-1:send")
    decode(u)  # the untampered transaction is fine: the change alone is refused
    tampered = REFUSED[case](u)
    assert tampered != u
    with pytest.raises(NotAPlatformTx):
        decode(tampered)


def test_a_tampered_validator_is_visible_and_breaks_the_signature() -> None:
    # Tampering that decodes is visible: the signer sees the other validator, and the
    # signature over the original sign-doc does not verify for the tampered one.
    u = _build([MESSAGES["delegate"]])
    signature = KEY.sign(sign_doc(u), canonicalise=True)
    body, _ = _parts(u)
    body.messages[0].CopyFrom(_any(create_delegate_msg(ME, VAL_B, 10**18, DENOM)))
    tampered = _with(u, body=body)
    assert decode(tampered).messages == (msg_delegate(ME, VAL_B, 10**18, DENOM),)
    assert not KEY.public_key.verify(sign_doc(tampered), signature)


def test_unsigned_tx_refuses_extra_fields_and_bad_hex() -> None:
    u = _build([MESSAGES["send"]])
    with pytest.raises(ValidationError):
        UnsignedCosmosTx.model_validate({**u.model_dump(), "extra": 1})
    with pytest.raises(ValidationError):
        UnsignedCosmosTx.model_validate({**u.model_dump(), "body_bytes_hex": "0A0B"})
    with pytest.raises(ValidationError):
        UnsignedCosmosTx.model_validate({**u.model_dump(), "account_number": -1})
    assert UnsignedCosmosTx.model_validate_json(u.model_dump_json()) == u
