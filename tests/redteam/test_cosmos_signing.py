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


@pytest.mark.signer_env(CUSTODY_COSMOS_VALIDATORS=_validator_a)
def test_the_signer_delegates_only_what_the_stake_authorises(
    stack_settings: PlatformSettings,
    fresh_postgres_url: str,
    governed: Governed,
    attacker: TemporalSigningClient,
) -> None:
    s, url = stack_settings, fresh_postgres_url
    a, b = s.allowed_validators()[:2]
    p = Platform(s, url)
    p.create_wallet()
    mine, theirs = p.client_address("c1", "ATOM"), p.client_address("c2", "ATOM")
    node = p.cosmos
    assert s.cosmos_faucet is not None
    CosmosFaucet(node, s.cosmos_faucet).fund((mine.address, FUNDED), (theirs.address, FUNDED))
    xpub = p.keys.wallet(s.platform_wallet).xpubs["cosmos"]  # type: ignore[union-attr]
    tag = uuid.uuid4().hex[:8]
    op_a, op_b = f"stk-{tag}-a", f"stk-{tag}-b"
    governed.stake(op_a, "c1", STAKE, a)
    governed.stake(op_b, "c1", STAKE, b)  # the client signed it; B is not on the list

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
