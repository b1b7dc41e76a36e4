"""The chart of accounts the sagas book against: one naming rule, used everywhere.

Per asset: `omnibus:<A>` is what the platform holds on chain (debit-normal: a
deposit debits it, a withdrawal credits it); `client:<id>:<A>` is what it owes a
client; `fees:network:<A>` what it paid miners and validators; `treasury:<A>` the
platform's own money put into its hot wallet; `quarantine:<A>` deposits held back
by screening or sent in an asset the address was not given for.
"""

from __future__ import annotations

from sagas.ledger import Account, AccountKind


def client(client_id: str, asset: str) -> str:
    return f"client:{client_id}:{asset}"


def omnibus(asset: str) -> str:
    return f"omnibus:{asset}"


def network_fees(asset: str) -> str:
    return f"fees:network:{asset}"


def treasury(asset: str) -> str:
    return f"treasury:{asset}"


# The hot wallet's lanes after the first (decision 0026): deposit-address accounts
# whose deposits are the treasury's, like those to the first lane's address.
LANE_PREFIX = "treasury~"


def hot_lane(lane: int) -> str:
    """The account id of the hot wallet's Ethereum address number `lane` (0: the
    treasury's own address, decision 0006)."""
    return treasury("ETH") if lane == 0 else f"{LANE_PREFIX}{lane}:ETH"


def staked(client_id: str, validator: str, asset: str) -> str:
    """What a client has delegated to one validator (issue 14): a client account apart
    from its available balance, so that a slash of that validator is booked exactly."""
    return f"staked:{client_id}:{validator}:{asset}"


def unbonding(client_id: str, validator: str, asset: str) -> str:
    """What a client undelegated from a validator and the chain has not released yet."""
    return f"unbonding:{client_id}:{validator}:{asset}"


def staking_commission(asset: str) -> str:
    """The platform's commission on its clients' staking rewards (sagas/staking/rewards.py)."""
    return f"fees:staking:{asset}"


def quarantine(asset: str) -> str:
    return f"quarantine:{asset}"


def settlement(counterparty: str, asset: str) -> str:
    """What a liquidity provider owes the platform in an asset (debit balance: the
    platform bought and the provider has not delivered yet) or is owed (credit)."""
    return f"settlement:{counterparty}:{asset}"


def settlement_account(counterparty: str, asset: str) -> Account:
    """The provider's settlement account in the asset, as the trade and settlement sagas
    open it (idempotently) before they book against it."""
    return Account(
        id=settlement(counterparty, asset), asset=asset, kind=AccountKind.COUNTERPARTY_SETTLEMENT
    )


def sibling(account_id: str, asset: str) -> str:
    """The account of the same holder in another asset: a token sent to a client's
    Ethereum address belongs to the client's account in that token; whatever reaches a
    lane of the hot wallet is the treasury's."""
    holder = account_id.rsplit(":", 1)[0]
    if holder.startswith(LANE_PREFIX):
        holder = "treasury"
    return f"{holder}:{asset}"


# Platform accounts opened for every asset, with their kinds. Treasury and quarantine
# are platform money, never a client's, so they use kinds without the overdraft rule.
PLATFORM_ACCOUNTS = (
    (omnibus, AccountKind.OMNIBUS),
    (network_fees, AccountKind.FEES),
    (treasury, AccountKind.SUSPENSE),
    (quarantine, AccountKind.SUSPENSE),
)
