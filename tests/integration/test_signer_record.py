"""The signer's own record under concurrency, on PostgreSQL with the real signer
(OpenBao unwrap, guard, record): operations racing for one coin or one nonce, and
one operation racing with two different payments. Exactly one signature wins each
race, and the record holds exactly it."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

from eth_account import Account

from adapters.chains.bitcoin.tx import Plan, Utxo, to_request
from adapters.ledger.migrate import upgrade
from sagas.errors import KeyAccessDenied
from sagas.signing import UnsignedBtcTransaction
from services.platform import Platform
from services.settings import PlatformSettings
from services.signer.main import build_signer
from tests.governed import Governed, approve
from tests.redteam.conftest import signatures

SAT = 1_000_000


def _race(n: int, attempt: Callable[[int], object]) -> tuple[list[int], list[int]]:
    """Run attempt(0..n-1) at once; (winners, refused)."""
    start = threading.Barrier(n)
    won: list[int] = []
    refused: list[int] = []

    def run(i: int) -> None:
        start.wait()
        try:
            attempt(i)
            won.append(i)
        except KeyAccessDenied:
            refused.append(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return won, refused


def test_one_coin_and_one_nonce_are_signed_for_one_operation_only(
    stack_settings: PlatformSettings, fresh_postgres_url: str
) -> None:
    s, url = stack_settings, fresh_postgres_url
    upgrade(url)
    p = Platform(s, url)
    p.open_books()
    p.create_wallet()
    p.open_client_accounts("c1")
    coin_address = p.client_address("c1", "BTC")
    hot = p.hot_wallet()
    destination = coin_address.address  # any address: here the client's own
    receiver = Account.create().address
    gov = Governed(url)
    gov.defaults()
    ops = [f"wd-{uuid.uuid4().hex[:8]}" for _ in range(8)]
    for op in ops:
        approve(url, op, "BTC", "bitcoin", SAT // 2, destination)
        approve(url, op + "-eth", "ETH", "ethereum", 1000, receiver)

    def btc_request(vout: int) -> UnsignedBtcTransaction:
        """Half of a made-up coin of the wallet to the payment, the rest as fee (the
        signer does not ask the chain; the cap is raised for this test's signer)."""
        coin = Utxo("ab" * 32, vout, coin_address.address, SAT)
        plan = Plan((coin,), ((destination, SAT // 2),), 0, SAT - SAT // 2)
        return to_request(plan, None, None, [(0, coin_address.index)])

    trusting = {"signer_max_btc_fee": SAT, "governance_genesis_hash": gov.genesis_hash}
    signer = build_signer(s.model_copy(update=trusting), url)
    # Eight operations, one coin.
    won, refused = _race(
        8, lambda i: signer.sign_btc_transaction(ops[i], s.platform_wallet, btc_request(0))
    )
    assert len(won) == 1 and len(refused) == 7
    unsigned_op = ops[refused[0]]
    assert signatures(url) == 1 and signatures(url, ops[won[0]]) == 1

    tx = {
        "type": 2,
        "chainId": s.eth_chain_id,
        "nonce": 0,
        "to": receiver,
        "value": 1000,
        "gas": 21_000,
        "maxFeePerGas": 10**9,
        "maxPriorityFeePerGas": 10**9,
    }
    won, refused = _race(
        8,
        lambda i: signer.sign_evm_transaction(ops[i] + "-eth", s.platform_wallet, hot.index, tx),
    )
    assert len(won) == 1 and len(refused) == 7

    assert signatures(url) == 2

    # One operation, two payments from different coins at once: one is signed.
    won, refused = _race(
        2,
        lambda i: signer.sign_btc_transaction(unsigned_op, s.platform_wallet, btc_request(10 + i)),
    )
    assert len(won) == 1 and len(refused) == 1
    assert signatures(url, unsigned_op) == 1 and signatures(url) == 3
