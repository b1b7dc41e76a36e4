"""Building and signing P2WPKH transactions with python-bitcoinlib (BIP143 sighash),
signatures from coincurve (libsecp256k1: low-S, as relay policy requires). Our coins
are P2WPKH; payments go to P2WPKH, P2WSH, P2TR, P2PKH or P2SH (`script.py`).

Pure functions: coin selection, size and fee estimation, the unsigned transaction and
its typed request for the signer (`to_request`, `from_request`), the BIP143 digests,
and assembling witnesses. Keys never pass through here: the signer computes the
digests from the request and signs them (a test faucet signs its own)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from bitcoin.core import (
    CMutableTransaction,
    CMutableTxIn,
    CMutableTxOut,
    COutPoint,
    CTxInWitness,
    CTxWitness,
    Hash160,
    b2lx,
    lx,
)
from bitcoin.core.script import (
    OP_CHECKSIG,
    OP_DUP,
    OP_EQUALVERIFY,
    OP_HASH160,
    SIGHASH_ALL,
    SIGVERSION_WITNESS_V0,
    CScript,
    CScriptWitness,
    SignatureHash,
)

from adapters.chains.bitcoin.script import dust_limit, output_script
from sagas.errors import CannotPay
from sagas.signing import BtcInput, BtcOutput, UnsignedBtcTransaction

RBF_SEQUENCE = 0xFFFFFFFD  # BIP125: replaceable, and no relative lock time
DUST = 294  # sat: below this our P2WPKH change costs more to spend than it holds
_OVERHEAD_VB, _INPUT_VB = 11, 68  # P2WPKH inputs, in virtual bytes
CHANGE_VB = 31  # our change output: P2WPKH


@dataclass(frozen=True)
class Utxo:
    txid: str
    vout: int
    address: str
    amount: int  # sat


@dataclass(frozen=True)
class Plan:
    inputs: tuple[Utxo, ...]
    outputs: tuple[tuple[str, int], ...]
    change: int  # sat to the change address (0: no change output)
    fee: int


class InsufficientCoins(CannotPay):
    """Not enough spendable coins for the outputs and the fee."""


def output_vbytes(outputs: Sequence[tuple[str, int]]) -> int:
    """The outputs' size: amount (8), script length (1) and the script, per output."""
    return sum(9 + len(output_script(address)) for address, _ in outputs)


def check_outputs(outputs: Sequence[tuple[str, int]]) -> int:
    """CannotPay unless the chain will take every output (an address we pay, at least
    its dust limit: the node would refuse the transaction after we recorded it); their
    size in vB."""
    if not outputs:
        raise CannotPay("a payment needs at least one output")
    for address, amount in outputs:
        limit = dust_limit(output_script(address))
        if amount < limit:
            raise CannotPay(f"{amount} sat to {address} is below its dust limit ({limit} sat)")
    return output_vbytes(outputs)


def vsize(n_inputs: int, outputs_vb: int) -> int:
    return _OVERHEAD_VB + _INPUT_VB * n_inputs + outputs_vb


def select(utxos: Sequence[Utxo], outputs: Sequence[tuple[str, int]], fee_rate: int) -> Plan:
    """Largest coins first until the outputs and the fee are covered; change above dust
    goes back, change below dust goes to the fee."""
    target = sum(amount for _, amount in outputs)
    outputs_vb = check_outputs(outputs)
    chosen: list[Utxo] = []
    total = 0
    for utxo in sorted(utxos, key=lambda u: (-u.amount, u.txid, u.vout)):
        chosen.append(utxo)
        total += utxo.amount
        fee_with_change = math.ceil(vsize(len(chosen), outputs_vb + CHANGE_VB) * fee_rate)
        if total >= target + fee_with_change + DUST:
            return Plan(
                tuple(chosen), tuple(outputs), total - target - fee_with_change, fee_with_change
            )
        fee_without = math.ceil(vsize(len(chosen), outputs_vb) * fee_rate)
        if total >= target + fee_without:
            return Plan(tuple(chosen), tuple(outputs), 0, total - target)
    raise InsufficientCoins(f"need {target} sat plus fees, have {total}")


def unsigned(plan: Plan, change_address: str | None) -> CMutableTransaction:
    txins = [
        CMutableTxIn(COutPoint(lx(u.txid), u.vout), nSequence=RBF_SEQUENCE) for u in plan.inputs
    ]
    txouts = [
        CMutableTxOut(amount, CScript(output_script(address))) for address, amount in plan.outputs
    ]
    if plan.change:
        assert change_address is not None
        txouts.append(CMutableTxOut(plan.change, CScript(output_script(change_address))))
    return CMutableTransaction(txins, txouts, nVersion=2)


def p2wpkh_script(pubkey: bytes) -> bytes:
    """The scriptPubKey of the P2WPKH output a compressed public key spends."""
    return b"\x00\x14" + bytes(Hash160(pubkey))


def to_request(
    plan: Plan,
    change_address: str | None,
    change_index: int | None,
    keys: Sequence[tuple[int, int]],
    pays: Sequence[str] | None = None,
) -> UnsignedBtcTransaction:
    """The unsigned transaction for the signer: each input with the output it spends and
    the (change, index) of its key (`keys`, in input order), the change output named by
    its index on the internal chain; for a batch, `pays` names the operation each
    payment output pays (in output order)."""
    if pays is not None and len(pays) != len(plan.outputs):
        raise ValueError("a batch names one operation per payment output")
    outputs = [
        BtcOutput(
            script_pubkey_hex=output_script(address).hex(),
            value=amount,
            pays=None if pays is None else pays[n],
        )
        for n, (address, amount) in enumerate(plan.outputs)
    ]
    if plan.change:
        assert change_address is not None and change_index is not None
        outputs.append(
            BtcOutput(
                script_pubkey_hex=output_script(change_address).hex(),
                value=plan.change,
                change_index=change_index,
            )
        )
    return UnsignedBtcTransaction(
        version=2,
        locktime=0,
        inputs=[
            BtcInput(
                txid=u.txid,
                vout=u.vout,
                sequence=RBF_SEQUENCE,
                value=u.amount,
                script_pubkey_hex=output_script(u.address).hex(),
                change=change,
                index=index,
            )
            for u, (change, index) in zip(plan.inputs, keys, strict=True)
        ],
        outputs=outputs,
    )


def from_request(request: UnsignedBtcTransaction) -> CMutableTransaction:
    """The transaction the request describes, exactly (no witnesses yet)."""
    txins = [
        CMutableTxIn(COutPoint(lx(i.txid), i.vout), nSequence=i.sequence) for i in request.inputs
    ]
    txouts = [
        CMutableTxOut(o.value, CScript(bytes.fromhex(o.script_pubkey_hex))) for o in request.outputs
    ]
    return CMutableTransaction(txins, txouts, nLockTime=request.locktime, nVersion=request.version)


def unsigned_txid(tx: CMutableTransaction) -> str:
    return str(b2lx(tx.GetTxid()))


def sighash_p2wpkh(tx: CMutableTransaction, index: int, amount: int, pubkey: bytes) -> bytes:
    """The BIP143 digest input `index` signs (P2WPKH: the P2PKH script code)."""
    script_code = CScript([OP_DUP, OP_HASH160, Hash160(pubkey), OP_EQUALVERIFY, OP_CHECKSIG])
    return bytes(
        SignatureHash(
            script_code,
            tx,
            index,
            SIGHASH_ALL,
            amount=amount,
            sigversion=SIGVERSION_WITNESS_V0,
        )
    )


def digest(tx: CMutableTransaction, index: int, utxo: Utxo, pubkey: bytes) -> bytes:
    """The BIP143 digest input `index` signs, for a coin (the test faucet signs its own)."""
    return sighash_p2wpkh(tx, index, utxo.amount, pubkey)


def finish(tx: CMutableTransaction, signatures: Sequence[tuple[bytes, bytes]]) -> bytes:
    """Attach (DER signature, pubkey) witnesses; the serialized transaction."""
    tx.wit = CTxWitness(
        [CTxInWitness(CScriptWitness([sig + bytes([SIGHASH_ALL]), pub])) for sig, pub in signatures]
    )
    return bytes(tx.serialize())


def txid(raw: bytes) -> str:
    from bitcoin.core import CTransaction

    return str(b2lx(CTransaction.deserialize(raw).GetTxid()))
