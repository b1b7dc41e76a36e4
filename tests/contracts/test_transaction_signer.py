"""TransactionSigner contract: adapters/chains/ethereum/signer.py InMemorySigner,
services/signer/signer.py CustodyEvmSigner and adapters/chains/payouts.py _OperationSigner
(the hot wallet's), the last two through the real Signer over a wallet on SQLite whose
seed is wrapped by tests.fakes.FakeKeyWrapper.

Checked: the address is an EIP-55 address; an EIP-1559 transaction and a legacy (EIP-155)
one come back signed, recovering to `address`, carrying every field given (the chain id
included, so it cannot be replayed elsewhere), a new signature for each transaction; no
repr shows the key; on anvil the raw transaction is accepted and mined as it is."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import rlp
from eth_account import Account
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_utils.address import is_checksum_address
from hexbytes import HexBytes

from adapters.chains.ethereum.faucet import DevChainFaucet
from adapters.chains.ethereum.node import Web3EthereumNode
from adapters.chains.ethereum.signer import InMemorySigner
from adapters.chains.payouts import _OperationSigner
from adapters.keys.hd import BipDeriver
from adapters.keys.store import SqlKeyStore
from sagas.keys.wallets import create_wallet
from sagas.ports import TransactionSigner
from services.settings import PlatformSettings
from services.signer.signer import CustodyEvmSigner, Signer
from tests.fakes import FakeKeyWrapper

TO = "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"
EIP1559: dict[str, object] = {
    "type": 2,
    "chainId": 31337,
    "nonce": 7,
    "to": TO,
    "value": 12345,
    "gas": 60_000,
    "maxFeePerGas": 3 * 10**9,
    "maxPriorityFeePerGas": 10**9,
    "data": b"\xa9\x05\x9c\xbb",
}
LEGACY: dict[str, object] = {"chainId": 5, "nonce": 1, "to": TO, "value": 9, "gas": 21_000}
LEGACY["gasPrice"] = 2 * 10**9
Signed = tuple[TransactionSigner, Callable[[str], bool]]


def _shows(key: bytes) -> Callable[[str], bool]:
    """Whether a text shows the key: the key stays in the closure, out of any report."""
    return lambda text: key.hex() in text.lower()


@pytest.fixture(params=["in-memory", "custody", "hot-wallet"])
def signed_by(request: pytest.FixtureRequest, tmp_path: Path) -> Signed:
    """A signer, and whether a text shows its private key."""
    if request.param == "in-memory":
        key = InMemorySigner.generate()
        return key, _shows(bytes(key._account.key))
    vault: dict[str, bytes] = {}
    store = SqlKeyStore(f"sqlite:///{tmp_path / 'keys.sqlite3'}")
    deriver = BipDeriver("simnet")
    wallet = create_wallet(
        f"w-{uuid.uuid4().hex[:8]}", deriver, FakeKeyWrapper(vault, False), store
    )
    signer = Signer(FakeKeyWrapper(vault, may_unwrap=True), store, deriver)
    op = f"withdrawal-{uuid.uuid4().hex}"
    shows = _shows(deriver.private_key(vault[wallet.wrapped_seed], "ethereum", 0, 3))
    if request.param == "custody":
        return CustodyEvmSigner(signer, wallet.wallet_id, 3, op), shows
    address = signer.evm_address(wallet.wallet_id, 3)
    return _OperationSigner(signer, wallet.wallet_id, 3, address, op), shows


def test_is_the_port_for_an_eip55_address(signed_by: Signed) -> None:
    signer, _ = signed_by
    assert isinstance(signer, TransactionSigner)
    assert is_checksum_address(signer.address)


def test_an_eip1559_transaction_is_signed_by_the_address_as_given(
    signed_by: Signed,
) -> None:
    signer, _ = signed_by
    raw = signer.sign_transaction(dict(EIP1559))
    assert raw[0] == 2 and Account.recover_transaction(raw) == signer.address
    fields = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
    numbers = {k: v for k, v in EIP1559.items() if k not in ("to", "data")}
    assert {k: fields[k] for k in numbers} == numbers
    assert (HexBytes(fields["to"]), HexBytes(fields["data"])) == (HexBytes(TO), EIP1559["data"])
    again = signer.sign_transaction({**EIP1559, "nonce": 8})
    assert again != raw and Account.recover_transaction(again) == signer.address


def test_a_legacy_transaction_is_signed_for_its_chain(
    signed_by: Signed,
) -> None:
    signer, _ = signed_by
    raw = signer.sign_transaction(dict(LEGACY))
    assert Account.recover_transaction(raw) == signer.address
    nonce, gas_price, gas, to, value, data, v, _, _ = rlp.decode(raw)
    decoded = [int.from_bytes(f, "big") for f in (nonce, gas_price, gas, value)]
    assert decoded == [LEGACY["nonce"], LEGACY["gasPrice"], LEGACY["gas"], LEGACY["value"]]
    assert (HexBytes(to), data) == (HexBytes(TO), b"")
    assert (int.from_bytes(v, "big") - 35) // 2 == LEGACY["chainId"]  # EIP-155


def test_no_repr_shows_the_key(signed_by: Signed) -> None:
    signer, shows_key = signed_by
    leaked = shows_key(repr(signer)) or shows_key(str(signer))
    assert not leaked


@pytest.mark.stack
def test_anvil_mines_the_raw_transaction(
    signed_by: Signed, stack_settings: PlatformSettings
) -> None:
    signer, _ = signed_by
    node = Web3EthereumNode(stack_settings.eth_rpc_url)
    DevChainFaucet(node.web3).fund_eth(signer.address, 10**17)
    receiver = InMemorySigner.generate().address
    receipt = node.wait_receipt(node.send_eth(signer, receiver, 4_321), 30)
    assert receipt.succeeded and node.balance(receiver) == 4_321
