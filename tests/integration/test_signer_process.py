"""The signer as its own process: this test process holds only the worker's role; the
signer subprocess (the only holder of the signer's role) signs over its Temporal task
queue, only a withdrawal its client signed under governance's policy (never one a row
merely says is approved) and only a transaction that pays exactly its destination and
amount, and the transaction confirms on anvil."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from eth_account import Account
from temporalio.client import WorkflowFailureError
from temporalio.worker import Worker

from adapters.chains.ethereum.faucet import DevChainFaucet
from adapters.chains.ethereum.node import Web3EthereumNode
from adapters.keys.hd import BipDeriver
from adapters.keys.openbao import OpenBaoKeyWrapper
from adapters.keys.store import SqlKeyStore
from adapters.operations.store import SqlOperationStore
from adapters.temporal import connect
from sagas.keys.wallets import create_wallet, deposit_address
from sagas.operations import OperationRecord
from sagas.signing import SignedTransaction, SignEvmRequest
from sagas.signing.workflows import SignEvmWorkflow
from services.settings import PlatformSettings
from tests.governed import Governed


@pytest.fixture
def governed(fresh_postgres_url: str) -> Governed:
    SqlKeyStore(fresh_postgres_url)  # schema in place before anything opens it
    gov = Governed(fresh_postgres_url)
    gov.defaults()
    return gov


@pytest.fixture
def signer_process(fresh_postgres_url: str, governed: Governed) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.signer.main", "--db-url", fresh_postgres_url],
        env={**os.environ, "CUSTODY_GOVERNANCE_GENESIS_HASH": governed.genesis_hash},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "signer ready" in line:
            break
    else:
        pytest.fail(f"signer exited: {proc.wait()}")
    yield proc
    proc.terminate()
    proc.wait(30)


def record_withdrawal(ops: SqlOperationStore, operation: str, to: str, wei: int) -> None:
    now = datetime.now(UTC)
    ops.create(
        OperationRecord(
            id=operation,
            kind="withdrawal",
            client_id="c1",
            asset="ETH",
            chain="ethereum",
            amount=wei,
            destination=to,
            request_hash="h",
            requested_by="u1",
            state="reserved",
            created_at=now,
            updated_at=now,
        )
    )


async def _sign(settings: PlatformSettings, request: SignEvmRequest) -> SignedTransaction:
    client = await connect(
        settings.temporal_address, settings.temporal_namespace, settings.temporal_transport()
    )
    queue = f"test-sign-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[SignEvmWorkflow]):
        return await client.execute_workflow(
            "SignEvmTransaction",
            request,
            id=f"sign-{request.operation_id}",
            task_queue=queue,
            result_type=SignedTransaction,
        )


def test_the_signer_process_signs_a_withdrawal_that_confirms(
    stack_settings: PlatformSettings,
    fresh_postgres_url: str,
    signer_process: subprocess.Popen[str],
    governed: Governed,
) -> None:
    s = stack_settings
    store = SqlKeyStore(fresh_postgres_url)
    deriver = BipDeriver(s.btc_network)
    worker_role = OpenBaoKeyWrapper(s.openbao_addr, *s.approle("custody-worker"), s.openbao_kek)
    wallet = create_wallet(f"sp-{uuid.uuid4().hex[:6]}", deriver, worker_role, store)
    hot = deposit_address(store, deriver, wallet.wallet_id, "ethereum", "treasury:ETH", None, "ETH")
    node = Web3EthereumNode(s.eth_rpc_url)
    DevChainFaucet(node.web3).fund_eth(hot.address, 10**18)
    receiver = Account.create().address
    tx = node.prepare(
        hot.address, node.eth_transfer(receiver, 12345), node.pending_nonce(hot.address)
    )

    operation = f"op-{uuid.uuid4().hex[:8]}"

    def request(op: str, signed_tx: dict[str, int | str], index: int = hot.index) -> SignEvmRequest:
        return SignEvmRequest(
            operation_id=op, wallet_id=wallet.wallet_id, index=index, tx=signed_tx
        )

    # Not on record: refused.
    with pytest.raises(WorkflowFailureError) as refused:
        asyncio.run(_sign(s, request(operation, tx)))
    assert "KeyAccessDenied" in str(refused.value.cause.cause), refused.value.cause.cause
    # On record, even marked approved in the database, but no client ever signed it.
    ops = SqlOperationStore(fresh_postgres_url)
    record_withdrawal(ops, operation, receiver, 12345)
    ops.advance(operation, "approved", state="approved", approved=True)
    with pytest.raises(WorkflowFailureError) as refused:
        asyncio.run(_sign(s, request(operation, tx)))
    assert "no intent" in str(refused.value.cause.cause)
    # The client's own signed request under governance's default policy: authorised.
    operation = f"op-{uuid.uuid4().hex[:8]}"
    governed.withdrawal(operation, "c1", "ETH", 12345, receiver, 10**18)
    # Approved, but the transaction pays someone else, or another amount: refused.
    # Approved, but another amount, destination, chain, an outrageous fee, or a key
    # other than the hot wallet's: refused.
    for other in (
        {**tx, "value": 12346},
        {**tx, "to": Account.create().address},
        {**tx, "chainId": 1},
        {**tx, "maxFeePerGas": 10**13},
        # A legacy transaction's gasPrice is not the capped max fee: refused outright.
        {
            **{k: v for k, v in tx.items() if k not in ("maxFeePerGas", "maxPriorityFeePerGas")},
            "type": 0,
            "gasPrice": 10**15,
        },
        {**tx, "gasPrice": 10**15},
        {**tx, "maxPriorityFeePerGas": int(tx["maxFeePerGas"]) + 1},
        {**tx, "gas": s.eth_gas_limit_eth + 1},  # more gas than an ETH transfer may burn
    ):
        with pytest.raises(WorkflowFailureError):
            asyncio.run(_sign(s, request(operation, other)))
    with pytest.raises(WorkflowFailureError):
        asyncio.run(_sign(s, request(operation, tx, index=hot.index + 1)))
    signed = asyncio.run(_sign(s, request(operation, tx)))

    receipt = node.wait_receipt(node.broadcast(bytes.fromhex(signed.raw_hex)), 30)
    assert receipt.succeeded and node.balance(receiver) == 12345
    assert signer_process.poll() is None
