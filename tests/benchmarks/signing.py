"""Signatures per second through the signer (unwrap the seed in OpenBao, derive, sign,
drop) beside raw library signing of the same transaction, in the same run.
Needs the stack (OpenBao). Run: .venv/bin/python -m tests.benchmarks.signing [-n 200]
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

from adapters.keys.hd import BipDeriver
from adapters.keys.openbao import OpenBaoKeyWrapper
from adapters.keys.store import SqlKeyStore
from sagas.keys.wallets import create_wallet
from services.settings import PlatformSettings
from services.signer.signer import Signer

TX: dict[str, object] = {
    "to": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "value": 10**15,
    "gas": 21_000,
    "maxFeePerGas": 2 * 10**9,
    "maxPriorityFeePerGas": 10**9,
    "chainId": 31337,
    "type": 2,
}


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
        store = SqlKeyStore(f"sqlite:///{Path(tmp) / 'keys.sqlite3'}")
        wallet = create_wallet(
            f"bench-{uuid.uuid4().hex[:6]}",
            deriver,
            OpenBaoKeyWrapper(s.openbao_addr, *s.approle("custody-worker"), s.openbao_kek),
            store,
        )
        signer = Signer(
            OpenBaoKeyWrapper(s.openbao_addr, *s.approle("custody-signer"), s.openbao_kek),
            store,
            deriver,
        )
        key = Account.create().key

        through_signer = _rate(
            args.n,
            lambda i: signer.sign_evm_transaction(
                f"bench-{i}", wallet.wallet_id, 0, {**TX, "nonce": i}
            ),
        )
        raw_eth = _rate(
            args.n * 10, lambda i: Account.sign_transaction(cast(Any, {**TX, "nonce": i}), key)
        )
        private = coincurve.PrivateKey(bytes(key))
        raw_curve = _rate(
            args.n * 50, lambda i: private.sign_recoverable(i.to_bytes(32, "big"), hasher=None)
        )
    print(f"signatures/s, {args.n} through the signer, more for the raw rows:")
    print(f"  signer (OpenBao unwrap + BIP32 derive + EIP-1559 sign): {through_signer:10,.0f}")
    print(f"  eth-account EIP-1559 sign, key in memory:               {raw_eth:10,.0f}")
    print(f"  coincurve secp256k1 sign of a digest:                   {raw_curve:10,.0f}")


if __name__ == "__main__":
    main()
