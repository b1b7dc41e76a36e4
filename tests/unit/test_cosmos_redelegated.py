"""What a redelegation delegated to its destination, as the adapter reads it from the
chain: the entry's initial balance, else the pools' payment in its events (a source
already unbonded makes no entry), else unknown. The settlement books exactly that."""

from __future__ import annotations

from datetime import UTC, datetime

from adapters.chains.cosmos.node import CosmosEvent, CosmosTxResult
from adapters.chains.cosmos.staking import new_entries, pool_payments, redelegated
from adapters.chains.cosmos.tx import module_address

NOT_BONDED = "cosmos1tygms3xhhs3yv487phx3dw4a95jn7t7lpm470r"  # the SDK's own, as simd names it
BONDED = "cosmos1fl48vsnmsdzcv85q5d2q4z5ajdha8yu34mf0eh"


def _result(*transfers: tuple[str, str, str]) -> CosmosTxResult:
    events = tuple(
        CosmosEvent("transfer", (("recipient", to), ("sender", sender), ("amount", amount)))
        for sender, to, amount in transfers
    )
    return CosmosTxResult("AB", 10, 0, "", "", 1, 1, None, events)


def test_the_module_addresses_are_the_sdks() -> None:
    assert module_address("not_bonded_tokens_pool") == NOT_BONDED
    assert module_address("bonded_tokens_pool") == BONDED


def test_the_entry_its_block_made_says_what_moved() -> None:
    assert redelegated(10_000_001, [10_000_000], []) == 10_000_000
    assert redelegated(10_000_001, [10_000_001], [5]) == 10_000_001
    assert redelegated(5, [7], []) == 7  # a validator's last delegator takes its leftovers
    # Two of the pair's in one block (asked 7 and 6, given 6 and 5): which is whose is
    # not known, so neither is guessed.
    assert redelegated(7, [6, 5], []) is None


def test_the_blocks_entries_are_those_not_there_before_it() -> None:
    """From a source that is unbonding (jailed) an entry's creation height is the source's
    unbonding height, not the transaction's: the new entry is found by difference."""
    ends = datetime(2026, 12, 25, tzinfo=UTC)
    older = (80, ends, 3_000_000, 3 * 10**24)
    made = (80, ends, 999_999, 10**24)  # same creation height: the source's unbonding one
    assert new_entries([older], [older, made]) == [999_999]
    assert new_entries([older, older], [older, older, older]) == [3_000_000]
    assert new_entries([older], [made]) == [999_999]  # the older one completed meanwhile
    assert new_entries([], []) == []


def test_without_an_entry_the_pools_payment_says() -> None:
    rewards = ("cosmos1jv65s3grqf6v6jl3dp4t6c9t9rk99cd88lyufl", "cosmos1abc", "12uatom")
    paid = _result(rewards, (NOT_BONDED, BONDED, "10000000uatom"))
    assert pool_payments(paid, "uatom", "cosmos") == [10_000_000]
    assert redelegated(10_000_001, [], pool_payments(paid, "uatom", "cosmos")) == 10_000_000
    # Another denom, the other direction, or more than a unit off: not this redelegation's.
    assert pool_payments(_result((NOT_BONDED, BONDED, "5stake")), "uatom", "cosmos") == []
    assert pool_payments(_result((BONDED, NOT_BONDED, "5uatom")), "uatom", "cosmos") == []
    assert redelegated(10_000_001, [], [9_999_999]) is None
    assert redelegated(10_000_001, [], [10_000_000, 10_000_000]) is None
    assert redelegated(10_000_001, [], []) is None
