"""Destinations that burn or loop money (CUS-3011) and minimum withdrawals (CUS-3012),
without the stack: the pure checks services/app/withdrawals.py calls."""

from __future__ import annotations

import pytest
from web3 import Web3

from adapters.keys.hd import BipDeriver
from sagas.errors import AmountBelowMinimum, DestinationRefused
from sagas.keys import AddressAssignment
from sagas.ledger import BTC, CTUSD, ETH
from services.app.destinations import (
    bitcoin_dust,
    ethereum_refusal,
    minimum_withdrawal,
    refuse_amount,
    refuse_destination,
)

TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
ELSEWHERE = "0x52908400098527886E0F7030069857D2E4169EE7"  # EIP-55's own test vector


def low(value: int) -> str:
    return Web3.to_checksum_address(f"0x{value:040x}")


def simnet_address() -> str:
    d = BipDeriver("simnet")
    return d.address(d.account_xpub(d.seed(d.new_mnemonic()), "bitcoin"), "bitcoin", 0, 0)


@pytest.mark.parametrize("value", [0, 1, 0x0A, 0x11, 0xFF, 0x100, 0xDEAD, 0xFFFF])
def test_the_zero_address_and_the_reserved_low_range_burn_money(value: int) -> None:
    reason = ethereum_refusal(low(value), [TOKEN])
    assert reason is not None and low(value) in reason
    assert ("zero address" in reason) == (value == 0)


def test_the_token_contract_burns_money_and_other_addresses_do_not() -> None:
    assert "token contract" in (ethereum_refusal(TOKEN, [TOKEN]) or "")
    assert "token contract" in (ethereum_refusal(TOKEN.lower(), [TOKEN]) or "")
    assert ethereum_refusal(ELSEWHERE, [TOKEN]) is None
    assert ethereum_refusal(low(0x10000), [TOKEN]) is None  # just above the reserved range
    assert ethereum_refusal(ELSEWHERE, [""]) is None  # no token configured


@pytest.mark.parametrize(
    ("network", "address", "dust"),
    [
        ("mainnet", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", 294),  # P2WPKH
        ("mainnet", "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", 294),  # upper case
        ("testnet", "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7", 330),  # P2WSH
        ("mainnet", "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0", 330),  # P2TR
        ("mainnet", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", 546),  # P2PKH
        ("mainnet", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", 540),  # P2SH
    ],
)
def test_bitcoin_dust_limits_by_script_type(network: str, address: str, dust: int) -> None:
    assert bitcoin_dust(address, network) == dust


def test_the_platforms_own_simnet_addresses_are_p2wpkh() -> None:
    assert bitcoin_dust(simnet_address(), "simnet") == 294


def test_the_minimum_is_the_setting_never_below_dust() -> None:
    p2wpkh, p2tr = (
        simnet_address(),
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
    )
    assert minimum_withdrawal(10_000, "bitcoin", p2wpkh, "simnet") == 10_000
    assert minimum_withdrawal(100, "bitcoin", p2wpkh, "simnet") == 294  # set below dust
    assert minimum_withdrawal(0, "bitcoin", p2tr, "mainnet") == 330
    assert minimum_withdrawal(10**15, "ethereum", ELSEWHERE, "simnet") == 10**15
    assert minimum_withdrawal(0, "ethereum", ELSEWHERE, "simnet") == 1


def test_an_amount_under_the_minimum_is_refused_with_its_code() -> None:
    with pytest.raises(AmountBelowMinimum) as refused:
        refuse_amount(ETH, 10**15 - 1, 10**15, "ethereum", ELSEWHERE, "simnet")
    assert refused.value.code == "CUS-3012" and "0.001 ETH" in refused.value.detail
    with pytest.raises(AmountBelowMinimum, match=r"0\.00000294 BTC"):
        refuse_amount(BTC, 293, 1, "bitcoin", simnet_address(), "simnet")
    with pytest.raises(AmountBelowMinimum):
        refuse_amount(CTUSD, 999_999, 1_000_000, "ethereum", ELSEWHERE, "simnet")
    refuse_amount(ETH, 10**15, 10**15, "ethereum", ELSEWHERE, "simnet")  # at the minimum
    refuse_amount(BTC, 294, 1, "bitcoin", simnet_address(), "simnet")


def assignment(address: str, owner: str | None, chain: str = "bitcoin") -> AddressAssignment:
    account = f"client:{owner}:BTC" if owner else "treasury:ETH"
    return AddressAssignment.model_validate(
        {
            "address": address,
            "account_id": account,
            "owner": owner,
            "chain": chain,
            "asset": "BTC" if chain == "bitcoin" else "ETH",
            "wallet_id": "platform",
            "change": 0,
            "index": 0,
        }
    )


def test_the_platforms_own_addresses_are_refused_without_naming_their_owner() -> None:
    own, other, hot = simnet_address(), simnet_address(), ELSEWHERE
    book = {
        own: assignment(own, "acme"),
        other: assignment(other, "globex"),
        hot: assignment(hot, None, "ethereum"),
    }
    with pytest.raises(DestinationRefused, match="your own deposit address"):
        refuse_destination(book.get, [TOKEN], "acme", "bitcoin", own)
    with pytest.raises(DestinationRefused) as refused:
        refuse_destination(book.get, [TOKEN], "acme", "bitcoin", other.upper())
    assert refused.value.code == "CUS-3011" and "globex" not in refused.value.detail
    with pytest.raises(DestinationRefused, match="an address of this platform"):
        refuse_destination(book.get, [TOKEN], "acme", "ethereum", hot)
    with pytest.raises(DestinationRefused, match="token contract"):
        refuse_destination(book.get, [TOKEN], "acme", "ethereum", TOKEN)
    with pytest.raises(DestinationRefused, match="zero address"):
        refuse_destination(book.get, [TOKEN], "acme", "ethereum", low(0))
    refuse_destination(book.get, [TOKEN], "acme", "ethereum", low(0x10000))  # not ours: fine
    refuse_destination(book.get, [TOKEN], "acme", "bitcoin", simnet_address())
