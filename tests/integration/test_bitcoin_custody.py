"""Bitcoin on btcd simnet: a client deposit is seen once and final after the confirmation
depth; a payment with change from the platform's UTXO set confirms, and the UTXO set
afterwards is exactly what btcd reports unspent for the platform's addresses."""

from __future__ import annotations

import json
import uuid

import pytest

from adapters.chains.bitcoin.faucet import BtcFaucet
from adapters.chains.bitcoin.node import BtcdNode
from adapters.chains.bitcoin.reader import BitcoinChainReader
from adapters.chains.bitcoin.sender import BitcoinSender, FeeBumpImpossible
from adapters.keys.hd import BipDeriver
from adapters.keys.openbao import OpenBaoKeyWrapper
from adapters.keys.store import SqlKeyStore
from adapters.sqldb import SqlDatabase
from sagas.errors import TransferIdConflict
from sagas.keys.wallets import create_wallet, deposit_address
from services.chainwatch.watcher import ChainWatcher
from services.settings import PlatformSettings
from services.signer.signer import Signer
from tests.integration.deposits import credited

BTC = 100_000_000
DEPTH = 6


@pytest.fixture
def btc(stack_settings: PlatformSettings) -> BtcdNode:
    return BtcdNode(
        stack_settings.btc_rpc_url, stack_settings.btc_rpc_auth(), stack_settings.btc_network
    )


def test_deposit_then_payment_with_change(
    stack_settings: PlatformSettings, fresh_postgres_url: str, btc: BtcdNode
) -> None:
    s = stack_settings
    store = SqlKeyStore(fresh_postgres_url)
    deriver = BipDeriver(s.btc_network)
    wallet = create_wallet(
        f"btc-{uuid.uuid4().hex[:8]}",
        deriver,
        OpenBaoKeyWrapper(s.openbao_addr, *s.approle("custody-worker"), s.openbao_kek),
        store,
    )
    alice = deposit_address(
        store, deriver, wallet.wallet_id, "bitcoin", "alice:BTC", "alice", "BTC"
    ).address
    faucet_key = json.loads((s.btc_rpc_credentials.parent / "faucet.json").read_text())
    faucet = BtcFaucet(btc, s.btc_network, faucet_key["wif"], faucet_key["address"])
    watcher = ChainWatcher(
        fresh_postgres_url,
        BitcoinChainReader(btc, s.btc_network),
        store,
        confirmations=DEPTH,
        start_height=btc.height() + 1,
    )

    funding = faucet.fund(alice, BTC // 2)
    btc.mine(1)
    watcher.run_until_caught_up()
    watcher.run_until_caught_up()
    (seen,) = watcher.observations()
    assert (seen.tx_hash, seen.amount, seen.state, seen.account_id) == (
        funding,
        str(BTC // 2),
        "seen",
        "alice:BTC",
    )
    btc.mine(DEPTH - 2)
    watcher.run_until_caught_up()
    assert watcher.observations()[0].state == "seen"  # 5 confirmations
    btc.mine(1)
    watcher.run_until_caught_up()
    assert watcher.observations()[0].state == "final"
    credited(fresh_postgres_url, funding, seen.position, BTC // 2)

    signer = Signer(
        OpenBaoKeyWrapper(s.openbao_addr, *s.approle("custody-signer"), s.openbao_kek),
        store,
        deriver,
    )
    sender = BitcoinSender(fresh_postgres_url, btc, signer, store, deriver)
    external = faucet.address
    txid, fee = sender.pay("payout-1", wallet.wallet_id, [(external, BTC // 5)], fee_rate=5)
    assert sender.pay("payout-1", wallet.wallet_id, [(external, BTC // 5)], 5) == (txid, fee)
    assert btc.in_mempool(txid)
    raw = btc._rpc("getrawtransaction", txid, 1)
    assert all(vin["sequence"] == 0xFFFFFFFD for vin in raw["vin"])  # RBF signalled
    assert 5 * 100 <= fee <= 5 * 200  # ~141 vB at 5 sat/vB
    btc.mine(1)
    assert btc.tx_out(txid, 0)["confirmations"] == 1
    watcher.run_until_caught_up()
    (out,) = watcher.outgoing()
    assert (out.operation_id, out.tx_hash, out.state) == ("payout-1", txid, "seen")

    (change,) = sender.unspent(wallet.wallet_id)
    assert change.txid == txid and change.amount == BTC // 2 - BTC // 5 - fee
    assert change.address != alice and change.address.startswith("sb1q")
    assert store.lookup(change.address).change == 1  # type: ignore[union-attr]
    # Our view equals btcd's: the deposit is spent, the change is unspent, nothing else.
    assert btc.tx_out(funding, int(seen.position.removeprefix("vout"))) is None
    node_view = btc.tx_out(change.txid, change.vout)
    assert node_view is not None
    assert round(node_view["value"] * BTC) == change.amount
    assert node_view["scriptPubKey"]["address"] == change.address
    with SqlDatabase(fresh_postgres_url).tx() as conn:
        ours = conn.all("select txid, vout from btc_utxos where spent_by is null")
    assert [(t, int(v)) for t, v in ours] == [(change.txid, change.vout)]

    # A stuck payment is replaced by a fee bump: same inputs, more fee, less change.
    txid2, fee2 = sender.pay("payout-2", wallet.wallet_id, [(external, BTC // 10)], fee_rate=2)
    bumped, fee3 = sender.bump("payout-2", wallet.wallet_id, fee_rate=20)
    assert bumped != txid2 and fee3 > fee2
    assert btc.in_mempool(bumped) and not btc.in_mempool(txid2)
    btc.mine(1)
    assert btc.tx_out(txid2, 0) is None and btc.tx_out(bumped, 0) is not None
    (change2,) = sender.unspent(wallet.wallet_id)
    assert change2.txid == bumped and change2.amount == change.amount - BTC // 10 - fee3
    assert btc.tx_out(change2.txid, change2.vout) is not None
    with pytest.raises(FeeBumpImpossible):  # mined: nothing left to replace
        sender.bump("payout-2", wallet.wallet_id, fee_rate=40)
    with pytest.raises(TransferIdConflict):  # an operation id pays one set of outputs
        sender.pay("payout-2", wallet.wallet_id, [(external, BTC // 9)], fee_rate=2)
