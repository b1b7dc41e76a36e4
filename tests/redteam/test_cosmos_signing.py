"""Attack 1c (issue 14, acceptance 4): a worker-side Temporal client asks the real signer
process to sign Cosmos transactions a client's stake does not authorise: a delegation
to a real validator that is not on the signer's allow-list (the stack's validator B,
left off it here), another amount than the intent's, another message type under the
stake (a send to a thief, a redelegation, an undelegation, a delegation with a send
beside it), from another client's delegator key. Each is refused (KeyAccessDenied,
CUS-4031), nothing is recorded, and on chain nothing moved; then the authorised
delegation is signed, broadcast, and the chain holds exactly it."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from adapters.chains.cosmos.faucet import CosmosFaucet
from adapters.chains.cosmos.tx import (
    address_of,
    build,
    msg_delegate,
    msg_redelegate,
    msg_send,
    msg_undelegate,
)
from adapters.temporal.signing import TemporalSigningClient
from sagas.errors import KeyAccessDenied
from sagas.signing import SignCosmosRequest
from services.platform import Platform
from services.settings import PlatformSettings
from tests.governed import Governed
from tests.redteam.conftest import signatures

FUNDED, STAKE, FEE, GAS = 20_000_000, 5_000_000, 2_000, 300_000
THIEF = address_of(b"\x02" + hashlib.sha256(b"thief").digest())


def _validator_a() -> str:
    return PlatformSettings.load().allowed_validators()[0]


Ask = Callable[..., SignCosmosRequest]


def _delegator(s: PlatformSettings, url: str) -> tuple[Platform, Any, Ask]:
    """The platform on the fresh database, c1's funded ATOM address, and what builds a
    signing request for a transaction of `messages` from an address (c1's by default)
    at its next sequence, as a compromised worker would."""
    p = Platform(s, url)
    p.create_wallet()
    mine = p.client_address("c1", "ATOM")
    node = p.cosmos
    assert s.cosmos_faucet is not None
    CosmosFaucet(node, s.cosmos_faucet).fund((mine.address, FUNDED))
    xpub = p.keys.wallet(s.platform_wallet).xpubs["cosmos"]  # type: ignore[union-attr]

    def ask(op: str, messages: list[object], who: object = mine) -> SignCosmosRequest:
        index = who.index  # type: ignore[attr-defined]
        address = who.address  # type: ignore[attr-defined]
        account = node.account(address)
        assert account is not None
        number, sequence = account
        pub = p.deriver.public_key(xpub, "cosmos", 0, index)
        u = build(messages, pub, sequence, number, s.cosmos_chain_id, FEE, "uatom", GAS)  # type: ignore[arg-type]
        return SignCosmosRequest(
            operation_id=op,
            wallet_id=s.platform_wallet,
            index=index,
            body_bytes_hex=u.body_bytes_hex,
            auth_info_bytes_hex=u.auth_info_bytes_hex,
            chain_id=u.chain_id,
            account_number=u.account_number,
        )

    return p, mine, ask


def _delegated(
    attacker: TemporalSigningClient, p: Platform, ask: Ask, op: str, address: str, validator: str
) -> None:
    """The stake `op` (its intent recorded) delegated on chain through the real signer."""
    raw = attacker.sign_cosmos_transaction(
        ask(op, [msg_delegate(address, validator, STAKE, "uatom")])
    )
    result = p.cosmos.wait_tx(p.cosmos.broadcast(raw), 30)
    assert result.succeeded, result.raw_log
    assert p.cosmos.delegation(address, validator) == STAKE


@pytest.mark.signer_env(CUSTODY_COSMOS_VALIDATORS=_validator_a)
def test_the_signer_delegates_only_what_the_stake_authorises(
    stack_settings: PlatformSettings,
    fresh_postgres_url: str,
    governed: Governed,
    attacker: TemporalSigningClient,
) -> None:
    s, url = stack_settings, fresh_postgres_url
    a, b = s.allowed_validators()[:2]
    p, mine, ask = _delegator(s, url)
    theirs = p.client_address("c2", "ATOM")
    node = p.cosmos
    assert s.cosmos_faucet is not None
    CosmosFaucet(node, s.cosmos_faucet).fund((theirs.address, FUNDED))
    tag = uuid.uuid4().hex[:8]
    op_a, op_b = f"stk-{tag}-a", f"stk-{tag}-b"
    governed.stake(op_a, "c1", STAKE, a)
    governed.stake(op_b, "c1", STAKE, b)  # the client signed it; B is not on the list

    me = mine.address
    attacks = {
        "validator B, not allowed": ask(op_b, [msg_delegate(me, b, STAKE, "uatom")]),
        "another amount": ask(op_a, [msg_delegate(me, a, STAKE + 1, "uatom")]),
        "a send to a thief": ask(op_a, [msg_send(me, THIEF, STAKE, "uatom")]),
        "a redelegation": ask(op_a, [msg_redelegate(me, a, b, STAKE, "uatom")]),
        "an undelegation": ask(op_a, [msg_undelegate(me, a, STAKE, "uatom")]),
        "a send beside": ask(
            op_a, [msg_delegate(me, a, STAKE, "uatom"), msg_send(me, THIEF, 1, "uatom")]
        ),
        "c2's key": ask(op_a, [msg_delegate(theirs.address, a, STAKE, "uatom")], theirs),
    }
    for name, request in attacks.items():
        with pytest.raises(KeyAccessDenied) as refused:
            attacker.sign_cosmos_transaction(request)
        assert refused.value.code == "CUS-4031", name
    assert signatures(url) == 0
    for address in (me, theirs.address):
        assert node.balance(address) == FUNDED
        assert node.delegation(address, a) == node.delegation(address, b) == 0
    assert node.balance(THIEF) == 0

    raw = attacker.sign_cosmos_transaction(ask(op_a, [msg_delegate(me, a, STAKE, "uatom")]))
    assert signatures(url, op_a) == 1
    result = node.wait_tx(node.broadcast(raw), 30)
    assert result.succeeded, result.raw_log
    assert node.delegation(me, a) == STAKE and node.delegation(me, b) == 0
    assert node.balance(me) == FUNDED - STAKE - FEE
    assert node.balance(theirs.address) == FUNDED and node.balance(THIEF) == 0


@pytest.mark.signer_env(CUSTODY_COSMOS_VALIDATORS=_validator_a)
def test_the_signer_redelegates_only_to_an_allowed_validator(
    stack_settings: PlatformSettings,
    fresh_postgres_url: str,
    governed: Governed,
    attacker: TemporalSigningClient,
) -> None:
    """A redelegation the client signed, to validator B, which this signer does not allow:
    refused, and the delegation stays at A (decision 0033)."""
    s, url = stack_settings, fresh_postgres_url
    a, b = s.allowed_validators()[:2]
    p, mine, ask = _delegator(s, url)
    tag = uuid.uuid4().hex[:8]
    stake = governed.stake(f"stk-{tag}", "c1", STAKE, a)
    _delegated(attacker, p, ask, stake.operation_id, mine.address, a)
    op = f"red-{tag}"
    governed.redelegate(op, stake, STAKE // 2, b)
    with pytest.raises(KeyAccessDenied) as refused:
        attacker.sign_cosmos_transaction(
            ask(op, [msg_redelegate(mine.address, a, b, STAKE // 2, "uatom")])
        )
    assert refused.value.code == "CUS-4031" and "not allowed" in str(refused.value)
    assert signatures(url, op) == 0
    assert p.cosmos.delegation(mine.address, a) == STAKE
    assert p.cosmos.delegation(mine.address, b) == 0


def test_the_signer_redelegates_only_what_the_client_signed_from_its_positions_validator(
    stack_settings: PlatformSettings,
    fresh_postgres_url: str,
    governed: Governed,
    attacker: TemporalSigningClient,
) -> None:
    """Both validators allowed. Under a redelegation of c1's stake at A to B: another
    amount, from B (not the position's validator), back to A, an undelegation or a send
    instead, c2's key, a redelegation whose intent says B but the client signed A: each
    refused, nothing recorded, nothing moved.
    Then the authorised one is signed, broadcast, and the chain moved exactly it."""
    s, url = stack_settings, fresh_postgres_url
    a, b = s.allowed_validators()[:2]
    p, mine, ask = _delegator(s, url)
    theirs = p.client_address("c2", "ATOM")
    node = p.cosmos
    assert s.cosmos_faucet is not None
    CosmosFaucet(node, s.cosmos_faucet).fund((theirs.address, FUNDED))
    tag = uuid.uuid4().hex[:8]
    stake = governed.stake(f"stk-{tag}", "c1", STAKE, a)
    _delegated(attacker, p, ask, stake.operation_id, mine.address, a)
    op, half, me = f"red-{tag}", STAKE // 2, mine.address
    governed.redelegate(op, stake, half, b)
    # A redelegation whose intent names B, but the client signed A.
    forged = f"red-{tag}-f"
    governed.redelegate(forged, stake, half, b, signed_validator=a)
    before = signatures(url)
    attacks = {
        "another amount": ask(op, [msg_redelegate(me, a, b, half + 1, "uatom")]),
        "from B, not the position's": ask(op, [msg_redelegate(me, b, b, half, "uatom")]),
        "back to A": ask(op, [msg_redelegate(me, a, a, half, "uatom")]),
        "an undelegation": ask(op, [msg_undelegate(me, a, half, "uatom")]),
        "a send to a thief": ask(op, [msg_send(me, THIEF, half, "uatom")]),
        "c2's key": ask(op, [msg_redelegate(theirs.address, a, b, half, "uatom")], theirs),
        "signed for A": ask(forged, [msg_redelegate(me, a, b, half, "uatom")]),
    }
    for name, request in attacks.items():
        with pytest.raises(KeyAccessDenied) as refused:
            attacker.sign_cosmos_transaction(request)
        assert refused.value.code == "CUS-4031", name
    assert signatures(url) == before
    assert node.delegation(me, a) == STAKE and node.delegation(me, b) == 0
    assert node.balance(THIEF) == 0

    raw = attacker.sign_cosmos_transaction(ask(op, [msg_redelegate(me, a, b, half, "uatom")]))
    assert signatures(url, op) == 1
    result = node.wait_tx(node.broadcast(raw), 30)
    assert result.succeeded, result.raw_log
    assert node.delegation(me, a) == STAKE - half
    # At a destination slashed by earlier tests (its rate below 1), the moved tokens'
    # shares read back up to a unit short: the chain truncates. Nothing else moved.
    assert half - 1 <= node.delegation(me, b) <= half


@pytest.mark.signer_env(CUSTODY_COSMOS_VALIDATORS=_validator_a)
def test_the_signer_sends_only_the_atom_withdrawal_the_client_signed(
    stack_settings: PlatformSettings,
    fresh_postgres_url: str,
    governed: Governed,
    attacker: TemporalSigningClient,
) -> None:
    """Decision 0035: a client's ATOM withdrawal authorises one MsgSend from its own
    address, to its destination, for its amount. To a thief, another amount, from
    another client's address, a delegation under it, a second send beside it: refused,
    nothing recorded, nothing moved; then the withdrawal itself is signed and paid."""
    s, url = stack_settings, fresh_postgres_url
    a = s.allowed_validators()[0]
    p, mine, ask = _delegator(s, url)
    theirs = p.client_address("c2", "ATOM")
    node = p.cosmos
    assert s.cosmos_faucet is not None
    CosmosFaucet(node, s.cosmos_faucet).fund((theirs.address, FUNDED))
    out = address_of(b"\x03" + hashlib.sha256(uuid.uuid4().bytes).digest())
    op = f"wd:c1:{uuid.uuid4().hex[:8]}"
    governed.withdrawal(op, "c1", "ATOM", STAKE, out, 10**5)
    me = mine.address
    attacks = {
        "to a thief": ask(op, [msg_send(me, THIEF, STAKE, "uatom")]),
        "another amount": ask(op, [msg_send(me, out, STAKE + 1, "uatom")]),
        "c2's address": ask(op, [msg_send(theirs.address, out, STAKE, "uatom")], theirs),
        "a delegation": ask(op, [msg_delegate(me, a, STAKE, "uatom")]),
        "a send beside": ask(
            op, [msg_send(me, out, STAKE, "uatom"), msg_send(me, THIEF, 1, "uatom")]
        ),
    }
    for name, request in attacks.items():
        with pytest.raises(KeyAccessDenied) as refused:
            attacker.sign_cosmos_transaction(request)
        assert refused.value.code == "CUS-4031", name
    assert signatures(url) == 0
    assert node.balance(me) == node.balance(theirs.address) == FUNDED
    assert node.balance(THIEF) == node.balance(out) == 0

    raw = attacker.sign_cosmos_transaction(ask(op, [msg_send(me, out, STAKE, "uatom")]))
    assert signatures(url, op) == 1
    result = node.wait_tx(node.broadcast(raw), 30)
    assert result.succeeded, result.raw_log
    assert node.balance(out) == STAKE and node.balance(THIEF) == 0
    assert node.balance(me) == FUNDED - STAKE - FEE
    assert node.balance(theirs.address) == FUNDED
