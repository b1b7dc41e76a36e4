"""A TransactionSigner holding a key in process memory: for tests and dev faucets only.

Client keys are signed for by services/signer (issue: keys and chains), which
unwraps a seed for one signature; this class never sees those.
"""

from __future__ import annotations

from typing import Any, cast

from eth_account import Account
from eth_account.signers.local import LocalAccount


class InMemorySigner:
    def __init__(self, account: LocalAccount) -> None:
        self._account = account

    @classmethod
    def generate(cls) -> InMemorySigner:
        return cls(Account.create())

    def __repr__(self) -> str:  # the key must not leak through a repr in a log or traceback
        return f"InMemorySigner({self._account.address})"

    @property
    def address(self) -> str:
        return str(self._account.address)

    def sign_transaction(self, tx: dict[str, object]) -> bytes:
        return bytes(self._account.sign_transaction(cast(Any, tx)).raw_transaction)
