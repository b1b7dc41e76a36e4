"""Wallets on the real stack: seeds wrapped by OpenBao and stored only as ciphertext,
deposit addresses per client account from xpubs, and the signer (the only role that
unwraps) sending ETH from a client's deposit address on anvil."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import psycopg
import pytest
from eth_account import Account

from adapters.chains.ethereum.faucet import DevChainFaucet
from adapters.chains.ethereum.node import Web3EthereumNode
from adapters.keys.hd import BipDeriver
from adapters.keys.openbao import OpenBaoKeyWrapper
from adapters.keys.store import SqlKeyStore
from sagas.errors import KeyAccessDenied
from sagas.keys.wallets import create_wallet, deposit_address
from services.settings import PlatformSettings
from services.signer.signer import CustodyEvmSigner, Signer

ETH = 10**18


def _role(s: PlatformSettings, role: str) -> OpenBaoKeyWrapper:
    return OpenBaoKeyWrapper(s.openbao_addr, *s.approle(role), s.openbao_kek)


@pytest.fixture
def setup(stack_settings: PlatformSettings, fresh_postgres_url: str):  # type: ignore[no-untyped-def]
    store = SqlKeyStore(fresh_postgres_url)
    deriver = BipDeriver(stack_settings.btc_network)
    wallet = create_wallet(
        f"hot-{uuid.uuid4().hex[:8]}", deriver, _role(stack_settings, "custody-worker"), store
    )
    return store, deriver, wallet


def test_wallet_is_stored_as_ciphertext_and_xpubs_only(setup, stack_settings) -> None:  # type: ignore[no-untyped-def]
    store, deriver, wallet = setup
    assert wallet.wrapped_seed.startswith("vault:v1:")
    assert set(wallet.xpubs) == {"bitcoin", "ethereum", "cosmos"}
    assert wallet.xpubs["bitcoin"].startswith("vpub")  # BIP84 test-network account key
    assert (
        create_wallet(wallet.wallet_id, deriver, _role(stack_settings, "custody-worker"), store)
        == wallet
    )  # idempotent: no second seed


@pytest.mark.parametrize("role", ["custody-api", "custody-worker"])
def test_only_the_signer_role_can_unwrap_a_seed(setup, stack_settings, role) -> None:  # type: ignore[no-untyped-def]
    _, _, wallet = setup
    with pytest.raises(KeyAccessDenied):
        _role(stack_settings, role).unwrap(wallet.wrapped_seed)
    assert len(_role(stack_settings, "custody-signer").unwrap(wallet.wrapped_seed)) == 64


def test_deposit_addresses_are_per_account_and_never_shared(setup) -> None:  # type: ignore[no-untyped-def]
    store, deriver, wallet = setup
    w = wallet.wallet_id
    alice_eth = deposit_address(store, deriver, w, "ethereum", "alice:ETH", "alice", "ETH")
    bob_eth = deposit_address(store, deriver, w, "ethereum", "bob:ETH", "bob", "ETH")
    alice_btc = deposit_address(store, deriver, w, "bitcoin", "alice:BTC", "alice", "BTC")
    again = deposit_address(store, deriver, w, "ethereum", "alice:ETH", "alice", "ETH")
    assert again == alice_eth
    assert alice_eth.address != bob_eth.address
    assert (alice_eth.index, bob_eth.index, alice_btc.index) == (0, 1, 0)
    assert alice_btc.address.startswith("sb1q")
    assert store.lookup(bob_eth.address) == bob_eth
    assert store.lookup("0x0000000000000000000000000000000000000000") is None

    got: list[str] = []
    start = threading.Barrier(10)

    def assign(n: int) -> None:
        start.wait()
        got.append(
            deposit_address(store, deriver, w, "ethereum", f"c{n}:ETH", f"c{n}", "ETH").address
        )

    threads = [threading.Thread(target=assign, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(set(got)) == 10 and alice_eth.address not in got


def test_signer_sends_eth_from_a_client_deposit_address_and_leaks_nothing(
    setup,
    stack_settings: PlatformSettings,
    fresh_postgres_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # type: ignore[no-untyped-def]
    store, deriver, wallet = setup
    alice = deposit_address(
        store, deriver, wallet.wallet_id, "ethereum", "alice:ETH", "alice", "ETH"
    )
    node = Web3EthereumNode(stack_settings.eth_rpc_url)
    DevChainFaucet(node.web3).fund_eth(alice.address, ETH)
    operation = f"withdrawal-{uuid.uuid4().hex}"
    signer = Signer(_role(stack_settings, "custody-signer"), store, deriver)
    custody_key = CustodyEvmSigner(signer, wallet.wallet_id, alice.index, operation)
    assert custody_key.address == alice.address
    receiver = Account.create().address
    receipt = node.wait_receipt(node.send_eth(custody_key, receiver, ETH // 10), 30)
    assert receipt.succeeded
    assert node.balance(receiver) == ETH // 10
    assert (
        node.balance(alice.address)
        == ETH - ETH // 10 - receipt.gas_used * receipt.effective_gas_price
    )

    # The unwrap is in OpenBao's audit log, named by its operation id.
    audit_log = Path(stack_settings.openbao_approle_dir).parent.parent / "logs/openbao-audit.log"
    entries = [json.loads(line) for line in audit_log.read_text().splitlines() if operation in line]
    decrypts = [
        e
        for e in entries
        if e["type"] == "response"
        and e["request"]["path"] == f"transit/decrypt/{stack_settings.openbao_kek}"
    ]
    assert len(decrypts) == 1
    assert decrypts[0]["request"]["headers"]["x-custody-operation"] == [operation]

    # No seed or derived private key anywhere: database, logs, test output.
    seed = _role(stack_settings, "custody-signer").unwrap(wallet.wrapped_seed)
    secrets_hex = {
        seed.hex(),
        deriver.private_key(seed, "ethereum", 0, alice.index).hex(),
        deriver.private_key(seed, "bitcoin", 0, 0).hex(),
    }
    with psycopg.connect(fresh_postgres_url) as conn:
        dump = "\n".join(
            str(row)
            for table in ("key_wallets", "deposit_addresses", "ledger_outbox")
            for row in conn.execute(f"select * from {table}").fetchall()
        ).lower()
    logs_dir = audit_log.parent
    logs = "\n".join(p.read_text(errors="replace") for p in logs_dir.glob("*.log")).lower()
    out = capsys.readouterr()
    for secret in secrets_hex:
        assert secret not in dump
        assert secret not in logs
        assert secret not in (out.out + out.err).lower()
