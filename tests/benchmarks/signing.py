"""Signatures per second through the signer (unwrap the seed in OpenBao, derive, sign,
drop) with its checks on (the guard: the authorised payment, the exact fields, the
signer's own record, one insert per signature), beside raw library signing of the
same transaction, in the same run. Needs the stack (OpenBao); the database is a
temporary SQLite file. Run: .venv/bin/python -m tests.benchmarks.signing [-n 200]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, cast

import coincurve
from eth_account import Account

from adapters.chains.bitcoin.tx import Plan, Utxo, to_request
from adapters.governance.store import LiveGovernance
from adapters.keys.hd import BipDeriver
from adapters.keys.openbao import OpenBaoKeyWrapper
from adapters.keys.store import SqlKeyStore
from adapters.operations.guard import HOT_WALLET_ACCOUNT, SigningGuard
from adapters.operations.intents import SqlIntentStore
from adapters.operations.store import SqlOperationStore
from sagas.keys.wallets import create_wallet, deposit_address
from services.platform import ASSETS
from services.settings import PlatformSettings
from services.signer.signer import Signer
from tests.governed import Governed

RECEIVER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
TX: dict[str, object] = {
    "to": RECEIVER,
    "value": 10**15,
    "gas": 21_000,
    "maxFeePerGas": 2 * 10**9,
    "maxPriorityFeePerGas": 10**9,
    "chainId": 31337,
    "type": 2,
}
SAT = 100_000


def _rate(n: int, fn: Any) -> float:
    began = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=200)
    args = parser.parse_args()
    s = PlatformSettings.load()
    deriver = BipDeriver(s.btc_network)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'signer.sqlite3'}"
        store = SqlKeyStore(url)
        ops = SqlOperationStore(url)
        wallet = create_wallet(
            f"bench-{uuid.uuid4().hex[:6]}",
            deriver,
            OpenBaoKeyWrapper(s.openbao_addr, *s.approle("custody-worker"), s.openbao_kek),
            store,
        )
        w = wallet.wallet_id
        hot = deposit_address(store, deriver, w, "ethereum", HOT_WALLET_ACCOUNT, None, "ETH")
        coin = deposit_address(store, deriver, w, "bitcoin", "bench:BTC", "bench", "BTC")
        payee = deposit_address(store, deriver, w, "bitcoin", "payee:BTC", "payee", "BTC").address
        change = store.assign(
            w,
            "bitcoin",
            f"{w}:change:bench",
            None,
            "BTC",
            lambda i: deriver.address(wallet.xpubs["bitcoin"], "bitcoin", 1, i),
            change=1,
        )
        # Governance as at an install; each payment is a withdrawal its client signed,
        # under governance's default policy: the signer verifies all of it every time.
        gov = Governed(url)
        gov.defaults()
        guard = SigningGuard(
            ops,
            url,
            {},
            31337,
            s.signer_max_fee_per_gas,
            (s.eth_gas_limit_eth, s.eth_gas_limit_token),
            s.signer_max_btc_fee,
            SqlIntentStore(url, migrate=False),
            LiveGovernance(gov.store),
            {code: asset.decimals for code, (asset, _chain) in ASSETS.items()},
        )
        signer = Signer(
            OpenBaoKeyWrapper(s.openbao_addr, *s.approle("custody-signer"), s.openbao_kek),
            store,
            deriver,
            guard,
        )
        for i in range(args.n):
            gov.withdrawal(f"bench-eth-{i}", "bench", "ETH", 10**15, RECEIVER, 10**18)
            gov.withdrawal(f"bench-btc-{i}", "bench", "BTC", SAT // 2, payee, 10**6)
        key = Account.create().key

        through_signer = _rate(
            args.n,
            lambda i: signer.sign_evm_transaction(
                f"bench-eth-{i}", w, hot.index, {**TX, "nonce": i}
            ),
        )

        def btc(i: int) -> None:
            # A made-up coin of the wallet per operation: the signer does not ask the chain.
            utxo = Utxo(f"{i:064x}", 0, coin.address, SAT)
            plan = Plan((utxo,), ((payee, SAT // 2),), SAT // 2 - 200, 200)
            request = to_request(plan, change.address, change.index, [(0, coin.index)])
            signer.sign_btc_transaction(f"bench-btc-{i}", w, request)

        through_signer_btc = _rate(args.n, btc)
        raw_eth = _rate(
            args.n * 10, lambda i: Account.sign_transaction(cast(Any, {**TX, "nonce": i}), key)
        )
        private = coincurve.PrivateKey(bytes(key))
        raw_curve = _rate(
            args.n * 50, lambda i: private.sign_recoverable(i.to_bytes(32, "big"), hasher=None)
        )
    print(f"signatures/s, {args.n} through the signer (checks and record on), more raw:")
    print(f"  signer, EIP-1559 (OpenBao unwrap + derive + checks + sign): {through_signer:10,.0f}")
    print(
        f"  signer, BTC 1-in 2-out (unwrap + derive + checks + BIP143): {through_signer_btc:10,.0f}"
    )
    print(f"  eth-account EIP-1559 sign, key in memory:                   {raw_eth:10,.0f}")
    print(f"  coincurve secp256k1 sign of a digest:                       {raw_curve:10,.0f}")


if __name__ == "__main__":
    main()
