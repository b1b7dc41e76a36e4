"""What a redelegation delegated to its destination, as the adapter reads it from the
chain: the entry's initial balance, else the pools' payment in its events (a source
already unbonded makes no entry), else unknown. The settlement books exactly that."""

from __future__ import annotations

from adapters.chains.cosmos.node import CosmosEvent, CosmosTxResult
from adapters.chains.cosmos.staking import pool_payments, redelegated
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


def test_the_entry_says_what_moved() -> None:
    assert redelegated(10_000_001, [10_000_000], []) == 10_000_000
    assert redelegated(10_000_001, [10_000_001], [5]) == 10_000_001
    # Two of the address's in one block: its own amount (or a unit less) among them.
    assert redelegated(7, [5, 6], []) == 6
    assert redelegated(7, [7, 4], []) == 7
    assert redelegated(7, [3, 4], []) is None


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
