"""Ethereum on anvil: ETH and the stack's test token, sent by the platform's adapter."""

from __future__ import annotations

from adapters.chains.ethereum.faucet import DevChainFaucet
from adapters.chains.ethereum.node import Web3EthereumNode
from adapters.chains.ethereum.signer import InMemorySigner
from services.settings import PlatformSettings

ETH = 10**18


def test_eth_and_token_transfers_change_on_chain_balances(stack_settings: PlatformSettings) -> None:
    node = Web3EthereumNode(stack_settings.eth_rpc_url)
    token = stack_settings.eth_token_address
    assert node.chain_id() == stack_settings.eth_chain_id
    assert node.token_decimals(token) == stack_settings.eth_token_decimals == 6
    faucet = DevChainFaucet(node.web3)
    sender, receiver = InMemorySigner.generate(), InMemorySigner.generate()

    faucet.fund_eth(sender.address, 2 * ETH)
    faucet.mint_token(token, sender.address, 500 * ETH)
    assert node.balance(sender.address) == 2 * ETH
    assert node.token_balance(token, sender.address) == 500 * ETH

    eth_receipt = node.wait_receipt(node.send_eth(sender, receiver.address, ETH // 4), 30)
    tok_receipt = node.wait_receipt(node.send_token(sender, token, receiver.address, 123 * ETH), 30)

    assert eth_receipt.succeeded and tok_receipt.succeeded
    assert node.balance(receiver.address) == ETH // 4
    assert node.token_balance(token, receiver.address) == 123 * ETH
    assert node.token_balance(token, sender.address) == 377 * ETH
    fees = sum(r.gas_used * r.effective_gas_price for r in (eth_receipt, tok_receipt))
    assert node.balance(sender.address) == 2 * ETH - ETH // 4 - fees
