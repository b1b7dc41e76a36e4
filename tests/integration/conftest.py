from __future__ import annotations

import pytest

from adapters.chains.ethereum.broadcaster import EvmBroadcaster
from adapters.chains.ethereum.node import Web3EthereumNode
from services.settings import PlatformSettings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.stack)


@pytest.fixture
def node(stack_settings: PlatformSettings) -> Web3EthereumNode:
    """The stack's anvil."""
    return Web3EthereumNode(stack_settings.eth_rpc_url)


@pytest.fixture
def broadcaster(fresh_postgres_url: str, node: Web3EthereumNode) -> EvmBroadcaster:
    """An EVM broadcaster on a fresh database and the stack's anvil."""
    return EvmBroadcaster(fresh_postgres_url, node)
