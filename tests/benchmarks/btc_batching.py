"""Virtual bytes and fee per Bitcoin payment, alone and in batches (decision 0025), in
the same run: each transaction is planned by the sender's coin selection, signed by the
signer (real P2WPKH witnesses from the platform's HD wallet), and measured from its
serialized bytes (weight / 4, rounded up). Needs no stack (keys on a temporary SQLite
file, the seed wrapped by a test wrapper).
Run: .venv/bin/python -m tests.benchmarks.btc_batching [--sizes 1,5,20,50]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

from bitcoin.core import CTransaction

from adapters.chains.bitcoin.networks import select_network
from adapters.chains.bitcoin.tx import Utxo, select, to_request
from services.signer.signer import Signer
from tests.fakes import FakeKeyWrapper
from tests.wallets import btc_wallet

FEE_RATE = 2  # sat/vB, the platform's default
PAYMENT = 1_000_000  # sat


def vsize(raw: bytes) -> int:
    tx = CTransaction.deserialize(raw)
    stripped = len(tx.serialize({"include_witness": False}))
    return math.ceil((3 * stripped + len(raw)) / 4)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,2,5,10,20,50")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    select_network("simnet")
    with tempfile.TemporaryDirectory() as tmp:
        w = btc_wallet(f"sqlite:///{Path(tmp) / 'keys.sqlite3'}", "w1:change:bench")
        signer = Signer(FakeKeyWrapper(w.vault, may_unwrap=True), w.store, w.deriver)
        coin, change = w.coin, w.change
        payees = [w.address(f"p{n}") for n in range(max(sizes))]
        utxo = Utxo("ab" * 32, 0, coin.address, 10**8)  # one coin pays any of these

        def measure(n: int) -> tuple[int, int]:
            plan = select([utxo], [(p, PAYMENT) for p in payees[:n]], FEE_RATE)
            pays = [f"op{i}" for i in range(n)] if n > 1 else None
            request = to_request(plan, change.address, change.index, [(0, coin.index)], pays)
            raw = signer.sign_btc_transaction("bench", "w1", request)
            return vsize(raw), plan.fee

        alone_vb, alone_fee = measure(1)
        print(f"machine: {os.cpu_count()} cores; fee rate {FEE_RATE} sat/vB")
        print(f"baseline, one transaction per payment: {alone_vb} vB, {alone_fee} sat")
        for n in sizes:
            vb, fee = measure(n)
            print(
                f"batch of {n:>3}: {vb:>5} vB in all, {vb / n:6.1f} vB and {fee / n:6.1f} sat "
                f"per payment ({vb / n / alone_vb:.2f}x alone)"
            )


if __name__ == "__main__":
    main()
