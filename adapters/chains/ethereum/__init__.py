"""Ethereum (web3.py): ETH and ERC-20 transfers, balances, receipts."""
