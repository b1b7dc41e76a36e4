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


class ApprovalExpired(CustodyError):
    """No quorum of operators approved the withdrawal before its deadline; it was voided."""

    code = "CUS-2003"
    title = "approval expired"


class DestinationScreened(CustodyError):
    """The withdrawal's destination was a screening hit and compliance rejected it; the
    reservation was voided."""

    code = "CUS-2012"
    title = "destination refused by screening"


class ScreeningHit(CustodyError):
    """The source of a deposit is on the screening deny list; the funds are quarantined."""

    code = "CUS-2004"
    title = "source refused by screening"


class ApprovalSignatureInvalid(CustodyError):
    """An approval (of a governance change or a withdrawal) that is not a valid signature
    by a registered operator key, or handed in by someone other than the key's operator."""

    code = "CUS-2005"
    title = "approval signature invalid"


class ApprovalByProposer(CustodyError):
    """The proposer of a governance change approving it: four eyes are two people."""

    code = "CUS-2006"
    title = "approval by the proposer"


class ApprovalOfOtherIntent(CustodyError):
    """An approval whose intent hash is not this proposal's (replayed from another)."""

    code = "CUS-2007"
    title = "approval of another intent"


class ProposalExpired(CustodyError):
    """The governance proposal expired before its quorum: propose it again."""

    code = "CUS-2008"
    title = "proposal expired"


class ProposalStale(CustodyError):
    """Another governance change was applied after this proposal was made: its link to
    the previous record no longer holds, so it can never apply. Propose it again."""

    code = "CUS-2009"
    title = "proposal stale"


class GovernanceUnverified(CustodyError):
    """No genesis with the pinned hash, or none pinned: governance cannot be verified."""

    code = "CUS-2010"
    title = "governance not verifiable"


class GovernanceRecordRefused(CustodyError):
    """A proposed governance record that cannot follow the current state: a malformed
    record for its kind, an operator who is not one, a quorum no operators could meet."""

    code = "CUS-2011"
    title = "governance record refused"


class RequestInvalid(CustodyError):
    """The request body or parameters do not match the API schema."""

    code = "CUS-3001"
    title = "request invalid"


class AddressInvalid(CustodyError):
    """The destination is not a valid address (for Ethereum: not in EIP-55 checksum form)."""

    code = "CUS-3002"
    title = "address invalid"


class AddressWrongNetwork(CustodyError):
    """The destination is an address of another network than the platform's."""

    code = "CUS-3003"
    title = "address of another network"


class TooManyDecimals(CustodyError):
    """The amount has more decimals than the asset's minor unit."""

    code = "CUS-3004"
    title = "more decimals than the asset has"


class IdempotencyConflict(CustodyError):
    """This Idempotency-Key was used before with a different request body."""

    code = "CUS-3005"
    title = "idempotency key reused with a different body"


class IdempotencyKeyMissing(CustodyError):
    """Every POST must carry an Idempotency-Key header (1-64 of A-Z a-z 0-9 . _ -)."""

    code = "CUS-3006"
    title = "idempotency key missing or malformed"


class BodyTooLarge(CustodyError):
    """The request body is larger than the API accepts."""

    code = "CUS-3007"
    title = "request body too large"


class NotFound(CustodyError):
    """No such resource, or not one the caller may see."""

    code = "CUS-3008"
    title = "not found"


class Unauthenticated(CustodyError):
    """No valid bearer token."""

    code = "CUS-3101"
    title = "authentication required"


class Forbidden(CustodyError):
    """The caller's role or client may not do this."""

    code = "CUS-3102"
    title = "forbidden"


class RequestSignatureInvalid(CustodyError):
    """The request is not signed by a registered key of its client, the signature does
    not cover exactly this method, path and body, its timestamp is too far from now, or
    its nonce was used before (the detail says which)."""

    code = "CUS-3103"
    title = "request signature invalid"


class InvalidState(CustodyError):
    """The operation is not in a state that allows this (e.g. approving a finished one)."""

    code = "CUS-3009"
    title = "operation not in a state that allows this"


class IbanInvalid(CustodyError):
    """The IBAN's shape or check digits are wrong (ISO 13616), or the BIC's shape."""

    code = "CUS-3010"
    title = "IBAN or BIC invalid"


class DestinationRefused(CustodyError):
    """The destination would burn or loop the money: the zero address, a precompile, the
    token contract itself, or one of the platform's own addresses (a transfer between
    clients is not a chain payment)."""

    code = "CUS-3011"
    title = "destination refused"


class AmountBelowMinimum(CustodyError):
    """The amount is under the asset's minimum withdrawal (never below the chain's dust
    limit), so the network fee would eat it or the chain would refuse it."""

    code = "CUS-3012"
    title = "amount below the minimum withdrawal"


class FeeAboveCap(CustodyError):
    """A fee bump would offer more than the signer's fee cap; nothing was replaced."""

    code = "CUS-3013"
    title = "fee above the signer's cap"


class BankInsufficientFunds(CustodyError):
    """The client's bank account has not enough available (ISO reason AM04)."""

    code = "CUS-5001"
    title = "insufficient funds at the bank"


class BankAccountUnknown(CustodyError):
    """The bank has no such account, or the client has none registered (ISO AC01)."""

    code = "CUS-5002"
    title = "bank account unknown"


class HoldNotActive(CustodyError):
    """The hold was captured, released or expired, or the capture exceeds it."""

    code = "CUS-5003"
    title = "hold not active"


class BankRefused(CustodyError):
    """The bank refused the instruction; its reason code is in the detail."""

    code = "CUS-5004"
    title = "refused by the bank"


class PaymentUnknown(CustodyError):
    """The bank has no payment under this idempotency key: it was never made."""

    code = "CUS-5005"
    title = "payment unknown to the bank"


class QuoteExpired(CustodyError):
    """The quote's life ended before it was executed (or accepted); nothing was traded."""

    code = "CUS-5101"
    title = "quote expired"


class TradeRejected(CustodyError):
    """The liquidity provider rejected the order; nothing was traded."""

    code = "CUS-5102"
    title = "trade rejected by the liquidity provider"


class QuoteInvalid(CustodyError):
    """A provider's quote does not add up (its notional is not its price times quantity
    under its stated rounding) or buys nothing; the platform does not trade on it."""

    code = "CUS-5103"
    title = "quote invalid"


class OrderUnknown(CustodyError):
    """The provider has no order with this client order id: it was never executed."""

    code = "CUS-5104"
    title = "order unknown to the provider"


class SettlementMismatch(CustodyError):
    """The provider's own net of the settled trades differs from the platform's."""

    code = "CUS-5105"
    title = "settlement does not match the provider's records"


class FillMismatch(CustodyError):
    """The provider's fill differs from the accepted quote (quantity, notional, price or
    counterparty) beyond the configured tolerance; it is alerted, never booked."""

    code = "CUS-5106"
    title = "fill does not match the quote"


class DependencyUnavailable(CustodyError):
    """A service the platform depends on did not answer; retrying may succeed."""

    code = "CUS-9001"
    title = "dependency unavailable"
    transient = True


class SigningDeadlinePassed(CustodyError):
    """The signer refused a request it received after the deadline the request carried
    (by the signer's own clock): nothing was signed; a new request may be."""

    code = "CUS-9002"
    title = "signing deadline passed"
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


class CannotPay(CustodyError):
    """The platform cannot build this payment (not enough spendable coins, an output the
    chain will not take): a terminal failure, the reservation is voided and alerted."""

    code = "CUS-4223"
    title = "payment cannot be built"


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
    ApprovalExpired,
    DestinationScreened,
    ScreeningHit,
    ApprovalSignatureInvalid,
    ApprovalByProposer,
    ApprovalOfOtherIntent,
    ProposalExpired,
    ProposalStale,
    GovernanceUnverified,
    GovernanceRecordRefused,
    RequestInvalid,
    AddressInvalid,
    AddressWrongNetwork,
    TooManyDecimals,
    IdempotencyConflict,
    IdempotencyKeyMissing,
    BodyTooLarge,
    NotFound,
    InvalidState,
    Unauthenticated,
    Forbidden,
    RequestSignatureInvalid,
    IbanInvalid,
    DestinationRefused,
    AmountBelowMinimum,
    FeeAboveCap,
    BankInsufficientFunds,
    BankAccountUnknown,
    HoldNotActive,
    BankRefused,
    PaymentUnknown,
    QuoteExpired,
    TradeRejected,
    QuoteInvalid,
    OrderUnknown,
    SettlementMismatch,
    FillMismatch,
    DependencyUnavailable,
    SigningDeadlinePassed,
    KeyAccessDenied,
    CiphertextInvalid,
    ChainRejected,
    NonceAlreadyUsed,
    CannotPay,
    NotOnThisNetwork,
)
