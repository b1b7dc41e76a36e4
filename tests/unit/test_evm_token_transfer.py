"""What a recorded payment may still spend of a token (adapters/chains/ethereum/node.py,
`_token_transfer`), read from a signed transaction as the broadcaster decodes it (bytes
fields) and from one the node helper built (hex text)."""

from __future__ import annotations

from eth_account import Account
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from hexbytes import HexBytes
from web3 import Web3

from adapters.chains.ethereum.node import _token_transfer

TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
TO = "0x52908400098527886E0F7030069857D2E4169EE7"


def _call(amount: int) -> str:
    return (
        "0xa9059cbb"
        + bytes.fromhex(TO[2:]).rjust(32, b"\0").hex()
        + amount.to_bytes(32, "big").hex()
    )


def test_a_token_transfer_is_read_from_built_and_from_decoded_transactions() -> None:
    built = {"to": TOKEN, "value": 0, "data": _call(1_234_567)}
    assert _token_transfer(built) == (Web3.to_checksum_address(TOKEN), 1_234_567)
    key = Account.create()
    raw = key.sign_transaction(
        {
            "type": 2,
            "chainId": 31337,
            "nonce": 0,
            "to": TOKEN,
            "value": 0,
            "data": _call(42),
            "gas": 60_000,
            "maxFeePerGas": 10**9,
            "maxPriorityFeePerGas": 1,
        }
    ).raw_transaction
    decoded = dict(TypedTransaction.from_bytes(HexBytes(raw.hex())).as_dict())
    assert _token_transfer(decoded) == (Web3.to_checksum_address(TOKEN), 42)


def test_an_eth_transfer_or_another_call_spends_no_token() -> None:
    assert _token_transfer({"to": TO, "value": 5}) == (None, 0)
    assert _token_transfer({"to": TOKEN, "value": 0, "data": "0xdeadbeef"}) == (None, 0)
    assert _token_transfer({"to": TOKEN, "value": 0, "data": _call(1)[:-2]}) == (None, 0)
