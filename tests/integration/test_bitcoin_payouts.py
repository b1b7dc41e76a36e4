"""Bitcoin payouts on btcd simnet, with deposits booked by the deposit saga's own
activities (screening against a deny list, credit or quarantine): a quarantined
deposit is never an input of a payment; a payment to a taproot address confirms with
the output script OP_1 <32 bytes>; what cannot be paid is CannotPay, nothing recorded."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from bip_utils import SegwitBech32Encoder

from adapters.chains.bitcoin.faucet import BtcFaucet
from adapters.chains.bitcoin.node import BtcdNode
from adapters.chains.bitcoin.reader import BitcoinChainReader
from adapters.chains.bitcoin.sender import BitcoinSender
from adapters.chains.bitcoin.tx import InsufficientCoins
from adapters.keys.openbao import OpenBaoKeyWrapper
from adapters.ledger.migrate import upgrade
from adapters.operations.observations import SqlDepositObservations
from adapters.operations.screening import DenyListScreening
from adapters.sqldb import SqlDatabase
from sagas import accounts
from sagas.deposit import DepositInput
from sagas.deposit.activities import DepositActivities
from sagas.errors import CannotPay
from services.chainwatch.watcher import ChainWatcher
from services.platform import Platform
from services.settings import PlatformSettings
from services.signer.signer import Signer

BTC = 100_000_000
DEPTH = 6


class World:
    def __init__(self, settings: PlatformSettings, url: str) -> None:
        upgrade(url)
        self.p = p = Platform(settings, url)
        p.open_books()
        p.create_wallet()
        self.btc: BtcdNode = p.btc
        key = json.loads((settings.btc_rpc_credentials.parent / "faucet.json").read_text())
        self.faucet = BtcFaucet(self.btc, settings.btc_network, key["wif"], key["address"])
        self.watcher = ChainWatcher(
            url,
            BitcoinChainReader(self.btc, settings.btc_network),
            p.keys,
            confirmations=DEPTH,
            start_height=self.btc.height() + 1,
        )
        s = settings
        signer = Signer(
            OpenBaoKeyWrapper(s.openbao_addr, *s.approle("custody-signer"), s.openbao_kek),
            p.keys,
            p.deriver,
        )
        self.sender = BitcoinSender(url, self.btc, signer, p.keys, p.deriver, migrate=False)
        self.wallet = s.platform_wallet
        self.url = url

    def client(self) -> tuple[str, str]:
        client_id = f"c{uuid.uuid4().hex[:8]}"
        self.p.open_client_accounts(client_id)
        return client_id, self.p.client_address(client_id, "BTC").address

    def deposit(self, address: str, sat: int) -> tuple[str, int]:
        """Fund `address` and bury it to finality; its outpoint."""
        txid = self.faucet.fund(address, sat)
        self.btc.mine(DEPTH)
        self.watcher.run_until_caught_up()
        (obs,) = [o for o in self.watcher.observations() if o.tx_hash == txid]
        assert obs.state == "final"
        return txid, int(obs.position.removeprefix("vout"))

    def book(self, outpoint: tuple[str, int], deny: list[str]) -> str:
        """Run the deposit saga's record, screen and credit steps; its end state."""
        obs = next(
            o
            for o in self.watcher.observations()
            if (o.tx_hash, o.position) == (outpoint[0], f"vout{outpoint[1]}")
        )
        steps = DepositActivities(
            self.p.ledger,
            self.p.operations,
            SqlDepositObservations(self.url),
            DenyListScreening(None, self.btc, deny=deny, btc_network="simnet"),
        )
        dep = DepositInput(
            chain="bitcoin",
            tx_hash=obs.tx_hash,
            position=obs.position,
            address=obs.address,
            account_id=obs.account_id,
            asset="BTC",
            amount=int(obs.amount),
        )
        steps.record_seen(dep)
        return steps.credit(dep, steps.screen(dep)).state

    def inputs(self, txid: str) -> set[tuple[str, int]]:
        raw: dict[str, Any] = self.btc._rpc("getrawtransaction", txid, 1)
        return {(vin["txid"], int(vin["vout"])) for vin in raw["vin"]}

    def recorded(self, operation_id: str) -> int:
        with SqlDatabase(self.url).tx() as conn:
            row = conn.one(
                "select count(*) from btc_transactions where operation_id = ?", (operation_id,)
            )
        return int(row[0])


@pytest.fixture
def world(stack_settings: PlatformSettings, fresh_postgres_url: str) -> World:
    return World(stack_settings, fresh_postgres_url)


def test_a_quarantined_deposit_is_never_an_input(world: World) -> None:
    _, clean_address = world.client()
    _, tainted_address = world.client()
    clean = world.deposit(clean_address, BTC // 2)
    tainted = world.deposit(tainted_address, 2 * BTC)  # the largest coin: picked first
    assert world.book(clean, deny=[]) == "credited"
    assert world.book(tainted, deny=[world.faucet.address]) == "quarantined"
    unscreened = world.deposit(clean_address, 3 * BTC)  # final, its saga not run yet
    world.sender.sync()  # all three final deposits are in the UTXO set: held
    assert len(world.sender.unspent(world.wallet)) == 3

    # More than the clean coin holds: refused, though the held coins would cover it.
    with pytest.raises(InsufficientCoins) as refused:
        world.sender.pay("wd-too-much", world.wallet, [(world.faucet.address, BTC)], 2)
    assert isinstance(refused.value, CannotPay) and refused.value.code == "CUS-4223"
    assert world.recorded("wd-too-much") == 0

    txid, fee = world.sender.pay("wd-1", world.wallet, [(world.faucet.address, BTC // 5)], 2)
    world.btc.mine(1)
    assert world.btc.tx_out(txid, 0)["confirmations"] == 1
    assert world.inputs(txid) == {clean}  # on chain: the quarantined outpoint is not spent
    assert world.btc.tx_out(*tainted) is not None and world.btc.tx_out(*unscreened) is not None

    # The change is spendable, nothing else; the held coins are what the books say we hold.
    (change,) = world.sender.unspent(world.wallet, spendable=True)
    assert change.txid == txid and change.amount == BTC // 2 - BTC // 5 - fee
    held = {(u.txid, u.vout) for u in world.sender.unspent(world.wallet)}
    assert held == {(change.txid, change.vout), tainted, unscreened}
    assert world.p.ledger.balance(accounts.quarantine("BTC")).total == 2 * BTC


def test_a_payment_to_a_taproot_address_confirms_with_its_output_script(world: World) -> None:
    _, address = world.client()
    world.book(world.deposit(address, BTC // 2), deny=[])
    key = bytes.fromhex("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
    taproot = SegwitBech32Encoder.Encode("sb", 1, key)
    assert taproot.startswith("sb1p")

    txid, _fee = world.sender.pay("wd-p2tr", world.wallet, [(taproot, BTC // 10)], 2)
    world.btc.mine(1)
    out = world.btc.tx_out(txid, 0)
    assert out is not None and out["confirmations"] == 1
    assert out["scriptPubKey"]["hex"] == "5120" + key.hex()  # OP_1 <32-byte key>
    assert round(out["value"] * BTC) == BTC // 10
    world.watcher.run_until_caught_up()  # the block reads fine; the payment is ours
    assert [(o.operation_id, o.tx_hash) for o in world.watcher.outgoing()] == [("wd-p2tr", txid)]

    # At the P2TR dust limit (330 sat) the node relays it; one sat less is CannotPay.
    at_limit, _ = world.sender.pay("wd-p2tr-330", world.wallet, [(taproot, 330)], 2)
    world.btc.mine(1)
    assert world.btc.tx_out(at_limit, 0)["scriptPubKey"]["hex"] == "5120" + key.hex()

    # Outputs the sender cannot build: CannotPay (terminal), and nothing recorded.
    for bad in (
        SegwitBech32Encoder.Encode("sb", 2, key),  # witness v2: anyone can spend
        SegwitBech32Encoder.Encode("sb", 1, key[:20]),  # v1 of 20 bytes
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",  # mainnet P2TR
    ):
        with pytest.raises(CannotPay):
            world.sender.pay(f"wd-bad-{bad[-6:]}", world.wallet, [(bad, BTC // 10)], 2)
        assert world.recorded(f"wd-bad-{bad[-6:]}") == 0
    with pytest.raises(CannotPay):  # below dust
        world.sender.pay("wd-dust", world.wallet, [(taproot, 329)], 2)
    assert world.recorded("wd-dust") == 0
