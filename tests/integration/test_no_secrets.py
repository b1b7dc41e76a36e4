"""A wallet restored from a known test mnemonic goes through every path that touches keys
(addresses, ETH and BTC signing, events relayed to Kafka); then every table, every stack
log, the events topic and the test's own output are scanned for the seed, the words and
every private key derived on the way. None may appear anywhere."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from bip_utils import Bip84, Bip84Coins
from confluent_kafka import Consumer, TopicPartition
from eth_account import Account

from adapters.chains.bitcoin.faucet import BtcFaucet
from adapters.chains.bitcoin.node import BtcdNode
from adapters.chains.bitcoin.reader import BitcoinChainReader
from adapters.chains.bitcoin.sender import BitcoinSender
from adapters.chains.ethereum.faucet import DevChainFaucet
from adapters.chains.ethereum.node import Web3EthereumNode
from adapters.chains.ethereum.reader import EthereumChainReader
from adapters.keys.hd import BipDeriver
from adapters.keys.openbao import OpenBaoKeyWrapper
from adapters.keys.store import SqlKeyStore
from sagas.keys.wallets import create_wallet, deposit_address
from services.chainwatch.watcher import ChainWatcher
from services.settings import PlatformSettings
from services.signer.signer import CustodyEvmSigner, Signer
from tests.integration.deposits import credited

# A BIP39 reference test vector: public, never a real wallet.
KNOWN_MNEMONIC = "legal winner thank year wave sausage worth useful legal winner thank yellow"


def _secrets(deriver: BipDeriver) -> dict[str, str]:
    seed = deriver.seed(KNOWN_MNEMONIC)
    found = {"seed": seed.hex(), "mnemonic": KNOWN_MNEMONIC}
    for chain in ("bitcoin", "ethereum"):
        for change in (0, 1):
            for index in range(4):
                key = deriver.private_key(seed, chain, change, index).hex()  # type: ignore[arg-type]
                found[f"{chain}/{change}/{index}"] = key
    found["xprv"] = str(
        Bip84.FromSeed(seed, Bip84Coins.BITCOIN_TESTNET)
        .Purpose()
        .Coin()
        .Account(0)
        .PrivateKey()
        .ToExtended()
    )
    return found


def _all_rows(url: str) -> str:
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "select table_name from information_schema.tables where table_schema = 'public'"
            )
        ]
        return "\n".join(
            str(row) for t in tables for row in conn.execute(f'select * from "{t}"').fetchall()
        )


def _topic_bytes(kafka: dict[str, str], topic: str) -> bytes:
    consumer = Consumer(
        {
            **kafka,
            "group.id": f"scan-{uuid.uuid4()}",
            "enable.partition.eof": True,
        }
    )
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    chunks, eofs = [], 0
    while eofs < len(parts) and (msg := consumer.poll(10)) is not None:
        if msg.error():
            eofs += 1
            continue
        chunks.append((msg.key() or b"") + (msg.value() or b""))
    consumer.close()
    return b"\n".join(chunks)


def test_no_seed_or_private_key_anywhere(
    stack_settings: PlatformSettings,
    fresh_postgres_url: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    s, url = stack_settings, fresh_postgres_url
    deriver = BipDeriver(s.btc_network)
    store = SqlKeyStore(url)
    worker = OpenBaoKeyWrapper(s.openbao_addr, *s.approle("custody-worker"), s.openbao_kek)
    wallet = create_wallet(
        f"known-{uuid.uuid4().hex[:6]}", deriver, worker, store, mnemonic=KNOWN_MNEMONIC
    )
    signer = Signer(
        OpenBaoKeyWrapper(s.openbao_addr, *s.approle("custody-signer"), s.openbao_kek),
        store,
        deriver,
    )
    eth_node, btc = (
        Web3EthereumNode(s.eth_rpc_url),
        BtcdNode(s.btc_rpc_url, s.btc_rpc_auth(), s.btc_network),
    )
    eth_start, btc_start = eth_node.block_number() + 1, btc.height() + 1

    # Ethereum: a deposit, watched, then sent on by the signer.
    eth_addr = deposit_address(store, deriver, wallet.wallet_id, "ethereum", "k:ETH", "k", "ETH")
    DevChainFaucet(eth_node.web3).fund_eth(eth_addr.address, 10**18)
    key = CustodyEvmSigner(signer, wallet.wallet_id, eth_addr.index, "scan-eth")
    eth_node.wait_receipt(eth_node.send_eth(key, Account.create().address, 10**16), 30)
    ChainWatcher(
        url, EthereumChainReader(eth_node, {}), store, confirmations=1, start_height=eth_start
    ).run_until_caught_up()

    # Bitcoin: a deposit, watched to finality, then paid out with change by the signer.
    btc_addr = deposit_address(store, deriver, wallet.wallet_id, "bitcoin", "k:BTC", "k", "BTC")
    faucet_key = json.loads((s.btc_rpc_credentials.parent / "faucet.json").read_text())
    faucet = BtcFaucet(btc, s.btc_network, faucet_key["wif"], faucet_key["address"])
    funding = faucet.fund(btc_addr.address, 20_000_000)
    btc.mine(6)
    btc_watcher = ChainWatcher(
        url, BitcoinChainReader(btc, s.btc_network), store, confirmations=6, start_height=btc_start
    )
    btc_watcher.run_until_caught_up()
    (deposit,) = btc_watcher.observations()
    credited(url, funding, deposit.position, 20_000_000)  # what the deposit saga would do
    BitcoinSender(url, btc, signer, store, deriver).pay(
        "scan-btc", wallet.wallet_id, [(faucet.address, 5_000_000)], fee_rate=3
    )

    # Everything the platform published, relayed to Kafka.
    relay = subprocess.run(
        [sys.executable, "-m", "services.relay.main", "--ledger-url", url, "--until-empty"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert relay.returncode == 0, relay.stderr
    print(relay.stdout, relay.stderr)

    haystacks = {
        "database": _all_rows(url),
        "logs": "\n".join(
            p.read_text(errors="replace")
            for p in (Path(s.openbao_approle_dir).parents[1] / "logs").glob("*.log")
        ),
        "events topic": _topic_bytes(s.kafka_client("admin"), "custody.events.v1").decode(
            errors="replace"
        ),
    }
    out = capfd.readouterr()
    haystacks["test output"] = out.out + out.err
    assert "k:BTC" in haystacks["database"] and eth_addr.address in haystacks["events topic"]
    secrets = _secrets(deriver)
    for principal in ("admin", "relay", "router", "bank"):  # Kafka's SCRAM passwords
        if s.kafka_credentials(principal) is not None:
            secrets[f"kafka password of {principal}"] = s.kafka_client(principal)["sasl.password"]
    for name, secret in secrets.items():
        for where, text in haystacks.items():
            assert secret.lower() not in text.lower(), f"{name} found in {where}"
