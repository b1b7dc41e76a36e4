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


class InsufficientFunds(CustodyError):
    """The debit would take an account that may not go negative below zero."""

    code = "CUS-1001"
    title = "insufficient funds"


class UnknownAccount(CustodyError):
    """No ledger account has this id."""

    code = "CUS-1002"
    title = "unknown account"


class TransferIdConflict(CustodyError):
    """This transfer id was used before with a different body."""

    code = "CUS-1003"
    title = "transfer id reused with a different body"


class AssetMismatch(CustodyError):
    """The transfer's accounts or asset do not agree."""

    code = "CUS-1004"
    title = "asset mismatch"


class PendingNotFound(CustodyError):
    """No pending transfer with this id, or it was already posted, voided or expired."""

    code = "CUS-1005"
    title = "pending transfer not found or already resolved"


class PendingExpired(CustodyError):
    """The pending transfer passed its expiry; it can only be voided now."""

    code = "CUS-1006"
    title = "pending transfer expired"


class PostExceedsPending(CustodyError):
    """A post of more than the pending transfer reserved."""

    code = "CUS-1007"
    title = "post amount exceeds the pending amount"


class InvalidAmount(CustodyError):
    """Amounts are positive integers in the asset's minor unit."""

    code = "CUS-1008"
    title = "invalid amount"


class SameAccount(CustodyError):
    """Debit and credit name the same account."""

    code = "CUS-1009"
    title = "debit and credit account are the same"


class UnknownAsset(CustodyError):
    """The asset is not registered in the ledger."""

    code = "CUS-1010"
    title = "unknown asset"


class AccountConflict(CustodyError):
    """An account with this id exists with a different asset, kind or owner."""

    code = "CUS-1011"
    title = "account id reused with a different definition"


class PolicyDenied(CustodyError):
    """The client's policy refuses this withdrawal; the rule that fired is in the detail."""

    code = "CUS-2001"
    title = "refused by policy"


class ApprovalRefused(CustodyError):
    """This approval does not count: the requester approving, or an operator twice."""

    code = "CUS-2002"
    title = "approval refused"


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


class NonceAlreadyUsed(ChainRejected):
    """The node already has a transaction with this sender and nonce."""

    code = "CUS-4222"
    title = "nonce already used"


class NotOnThisNetwork(CustodyError):
    """An operation reserved for test networks was attempted elsewhere."""

    code = "CUS-4001"
    title = "operation not allowed on this network"


CATALOGUE: tuple[type[CustodyError], ...] = (
    InsufficientFunds,
    UnknownAccount,
    TransferIdConflict,
    AssetMismatch,
    PendingNotFound,
    PendingExpired,
    PostExceedsPending,
    InvalidAmount,
    SameAccount,
    UnknownAsset,
    AccountConflict,
    PolicyDenied,
    ApprovalRefused,
    DependencyUnavailable,
    KeyAccessDenied,
    CiphertextInvalid,
    ChainRejected,
    NonceAlreadyUsed,
    NotOnThisNetwork,
)
