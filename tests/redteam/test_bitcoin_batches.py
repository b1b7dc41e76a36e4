"""Bitcoin payout batching (decision 0025) against the real signer process, on btcd and
PostgreSQL: withdrawals that arrive together go out as one transaction with an output
each, signed once after the signer checked every output against its own withdrawal;
each member's share of the fee adds up to the transaction's fee. A compromised worker
asking the signer to pay a batched withdrawal again (another batch, alone) is refused
and nothing moves. A batch the signer refuses (one member not authorised) is split:
the authorised members are paid alone, the other is refused."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from adapters.chains.bitcoin.batches import BitcoinBatches
from adapters.chains.bitcoin.sender import BitcoinSender
from adapters.chains.bitcoin.tx import Plan, Utxo, to_request
from adapters.sqldb import SqlDatabase
from adapters.temporal.signing import TemporalSigningClient
from sagas.errors import KeyAccessDenied
from sagas.signing import fee_shares
from services.settings import PlatformSettings
from tests.integration.test_bitcoin_payouts import World
from tests.redteam.conftest import approve, signatures
from tests.redteam.test_bitcoin_signing import _external

BTC = 100_000_000


def _world(
    s: PlatformSettings, url: str, signer: TemporalSigningClient, **timing: float
) -> tuple[World, BitcoinBatches]:
    world = World(s, url)
    _, deposit_address = world.client()
    for _ in range(2):
        assert world.book(world.deposit(deposit_address, BTC // 2), deny=[]) == "credited"
    sender = BitcoinSender(url, world.btc, signer, world.p.keys, world.p.deriver, migrate=False)
    return world, BitcoinBatches(url, sender, signer, window=0.5, wait=30, **timing)


def _pay_together(
    batches: BitcoinBatches, wallet: str, payments: dict[str, tuple[str, int]]
) -> dict[str, tuple[str, int] | BaseException]:
    results: dict[str, tuple[str, int] | BaseException] = {}

    def pay(op: str) -> None:
        destination, amount = payments[op]
        try:
            results[op] = batches.pay(op, wallet, destination, amount, 2)
        except Exception as exc:  # the test asserts on it
            results[op] = exc

    threads = [threading.Thread(target=pay, args=(op,)) for op in payments]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_withdrawals_that_arrive_together_go_out_as_one_checked_transaction(
    stack_settings: PlatformSettings, fresh_postgres_url: str, attacker: TemporalSigningClient
) -> None:
    s, url = stack_settings, fresh_postgres_url
    world, batches = _world(s, url, attacker)
    payments = {f"wd-{uuid.uuid4().hex[:8]}": (_external(), (n + 1) * BTC // 100) for n in range(3)}
    for op, (destination, amount) in payments.items():
        approve(url, op, "BTC", "bitcoin", amount, destination)
    results = _pay_together(batches, s.platform_wallet, payments)
    txids = {r[0] for r in results.values() if isinstance(r, tuple)}
    assert len(txids) == 1, results  # one transaction for the three
    (paid,) = txids
    raw = world.btc._rpc("getrawtransaction", paid, 1)
    assert len(raw["vin"]) == 1 and len(raw["vout"]) == 4  # three payments and change
    fee = BTC // 2 - sum(round(float(v["value"]) * BTC) for v in raw["vout"])  # one coin
    shares = fee_shares(fee, 3)
    for op in payments:
        queued = batches.queued(op)
        assert queued is not None and queued.position is not None
        assert results[op] == (paid, shares[queued.position])
        vout = raw["vout"][queued.position]
        assert vout["scriptPubKey"]["address"] == payments[op][0]
        assert round(float(vout["value"]) * BTC) == payments[op][1]
    assert all(0 < x < 10_000 for x in shares)
    # A repeat of any member (a retry) returns the same payment, signs nothing new.
    before = signatures(url)
    op = next(iter(payments))
    assert batches.pay(op, s.platform_wallet, *payments[op], 2)[0] == paid
    assert signatures(url) == before == 3

    # The compromised worker: the batch's first member again, in another batch from the
    # platform's other coin, and alone; each refused, nothing recorded, the coin unspent.
    spent = (raw["vin"][0]["txid"], raw["vin"][0]["vout"])
    (other_coin,) = [
        u
        for u in world.sender.unspent(s.platform_wallet)
        if (u.txid, u.vout) != spent and u.amount == BTC // 2
    ]
    deposit = world.p.keys.lookup(other_coin.address)
    change = world.p.keys.lookup(raw["vout"][3]["scriptPubKey"]["address"])
    assert deposit is not None and change is not None
    destination, amount = payments[op]
    # Alone, from the other coin; in another batch, from both coins at a higher fee (a
    # "replacement" as far as the member's own history goes): the signer's record names
    # the batch that pays it.
    first_coin = Utxo(spent[0], int(spent[1]), other_coin.address, BTC // 2)
    soon = datetime.now(UTC) + timedelta(seconds=20)
    for coins, pays, name, deadline, why in (
        ((other_coin,), None, f"{op}#9", None, "is paid by a batch"),
        ((first_coin, other_coin), [op], "btc-batch:evil#0", soon, "is paid by btc-batch:"),
        # a batch request as one is replayed from a signing workflow's history: refused
        ((first_coin, other_coin), [op], "btc-batch:evil#0", None, "needs a deadline"),
    ):
        fee = 5_000 * len(coins)
        plan = Plan(coins, ((destination, amount),), len(coins) * BTC // 2 - amount - fee, fee)
        keys = [(0, deposit.index)] * len(coins)
        request = to_request(plan, change.address, change.index, keys, pays).model_copy(
            update={"not_after": deadline}
        )
        with pytest.raises(KeyAccessDenied, match=why):
            attacker.sign_btc_transaction(name, s.platform_wallet, request)
    assert signatures(url) == 3
    assert world.btc.tx_out(other_coin.txid, other_coin.vout) is not None
    world.btc.mine(1)
    for op, (_destination, amount) in payments.items():
        queued = batches.queued(op)
        assert queued is not None and queued.position is not None
        out = world.btc.tx_out(paid, queued.position)
        assert out is not None and round(float(out["value"]) * BTC) == amount


def test_a_batch_the_signer_refuses_pays_its_authorised_members_alone(
    stack_settings: PlatformSettings, fresh_postgres_url: str, attacker: TemporalSigningClient
) -> None:
    s, url = stack_settings, fresh_postgres_url
    world, batches = _world(s, url, attacker, hold=7.0, sign_within=2.0)
    ops = [f"wd-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    payments = {op: (_external(), BTC // 100) for op in ops}
    for op in ops[:2]:  # the third is not authorised: the signer refuses any batch with it
        approve(url, op, "BTC", "bitcoin", payments[op][1], payments[op][0])
    results = _pay_together(batches, s.platform_wallet, payments)
    assert isinstance(results[ops[2]], KeyAccessDenied), results
    paid = [r for op, r in results.items() if op != ops[2]]
    assert all(isinstance(r, tuple) for r in paid), results
    assert len({r[0] for r in paid if isinstance(r, tuple)}) == 2  # each alone
    with SqlDatabase(url).tx() as conn:
        states = dict(conn.all("select batch_id, state from btc_batches"))
    # The batch of three and the unauthorised member's own: released; the others paid.
    assert sorted(states.values()) == ["formed", "formed", "released", "released"], states
    world.btc.mine(1)
    for op in ops[:2]:
        queued = batches.queued(op)
        assert queued is not None and queued.batch_id is not None
        txid = next(r[0] for o, r in results.items() if o == op and isinstance(r, tuple))
        out = world.btc.tx_out(txid, 0)
        assert out is not None and round(float(out["value"]) * BTC) == BTC // 100
    assert signatures(url, ops[2]) == 0
