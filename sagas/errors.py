"""The platform's stable error codes: one catalogue, asserted by tests, shown to banks.

Codes never change meaning once published. `transient` tells a caller (and
Temporal's retry policy) whether trying again can help.
"""

from __future__ import annotations

from typing import ClassVar


class CustodyError(Exception):
    code: ClassVar[str] = "CUS-0000"
    title: ClassVar[str] = "unclassified error"
    transient: ClassVar[bool] = False

    def __init__(self, detail: str = "") -> None:
        super().__init__(f"{self.code} {self.title}" + (f": {detail}" if detail else ""))
        self.detail = detail


class DependencyUnavailable(CustodyError):
    """A service the platform depends on did not answer; retrying may succeed."""

    code = "CUS-9001"
    title = "dependency unavailable"
    transient = True


class KeyAccessDenied(CustodyError):
    """The key service refused the caller's role this operation; retrying will not help."""

    code = "CUS-4031"
    title = "key access denied"


class CiphertextInvalid(CustodyError):
    """The ciphertext is not one the key service issued (corrupt, truncated, other key)."""

    code = "CUS-4002"
    title = "ciphertext invalid"


class ChainRejected(CustodyError):
    """The node refused a transaction (bad nonce, fee, signature, funds)."""

    code = "CUS-4221"
    title = "transaction rejected by the chain"


class NotOnThisNetwork(CustodyError):
    """An operation reserved for test networks was attempted elsewhere."""

    code = "CUS-4001"
    title = "operation not allowed on this network"


CATALOGUE: tuple[type[CustodyError], ...] = (
    DependencyUnavailable,
    KeyAccessDenied,
    CiphertextInvalid,
    ChainRejected,
    NotOnThisNetwork,
)
