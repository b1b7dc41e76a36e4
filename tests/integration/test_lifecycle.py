"""The stack's lifecycle: idempotent up, restart of one killed service, state kept across
down and up. These tests stop and start services, so `make test` runs them last, alone."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from adapters.chains.bitcoin.node import BtcdNode
from adapters.chains.ethereum.faucet import DevChainFaucet
from adapters.chains.ethereum.node import Web3EthereumNode
from adapters.chains.ethereum.signer import InMemorySigner
from adapters.keys.openbao import OpenBaoKeyWrapper
from adapters.temporal import connect
from infra import proc
from infra.settings import StackSettings
from infra.stack import Stack
from sagas.smoke import TASK_QUEUE, ReleaseSignal, SmokeInput, SmokeResult
from services.settings import PlatformSettings
from services.worker.bootstrap import build_workers

pytestmark = pytest.mark.lifecycle

CUSTODY = str(Path(sys.executable).parent / "custody")


def custody(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([CUSTODY, *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"custody {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def pids() -> dict[str, int | None]:
    return {svc.name: svc.pid() for svc in Stack(say=lambda _m: None).services}


def test_second_up_changes_nothing() -> None:
    before = pids()
    assert all(before.values()), before
    out = custody("stack", "up")
    assert "everything was already running" in out.stdout
    assert pids() == before


def test_killing_one_service_and_up_restarts_only_that_one() -> None:
    before = pids()
    victim = "btcd"
    victim_pid = before[victim]
    assert victim_pid is not None
    os.kill(victim_pid, signal.SIGKILL)
    assert proc.wait_until(lambda: pids()[victim] is None, timeout=10)

    out = custody("stack", "up")

    after = pids()
    assert "(started: btcd)" in out.stdout
    assert after[victim] not in (None, victim_pid)
    assert {k: v for k, v in after.items() if k != victim} == {
        k: v for k, v in before.items() if k != victim
    }


async def _start_parked_workflow(s: PlatformSettings, wf_id: str) -> None:
    client = await connect(s.temporal_address, s.temporal_namespace, s.temporal_transport())
    await client.start_workflow(
        "Smoke",
        SmokeInput(message="before the restart", wait_for_release=True),
        id=wf_id,
        task_queue=TASK_QUEUE,
    )


async def _finish_workflow(s: PlatformSettings, wf_id: str) -> SmokeResult:
    client = await connect(s.temporal_address, s.temporal_namespace, s.temporal_transport())
    workers = build_workers(client)
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        handle = client.get_workflow_handle(wf_id, result_type=SmokeResult)
        await handle.signal("release", ReleaseSignal(operator="after-restart"))
        return await asyncio.wait_for(handle.result(), timeout=60)
    finally:
        for w in workers:
            await w.shutdown()
        await asyncio.gather(*tasks, return_exceptions=True)


def _stack_processes(stack_dir: Path) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(stack_dir) in cmdline:
            found.append(f"{entry.name}: {cmdline[:120]}")
    return found


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_down_stops_everything_and_up_keeps_all_state(stack_settings: PlatformSettings) -> None:
    s = stack_settings
    # Before: a parked workflow, a wrapped secret, a token balance, a block height.
    wf_id = f"lifecycle-{uuid.uuid4().hex}"
    asyncio.run(_start_parked_workflow(s, wf_id))
    secret = secrets.token_bytes(32)
    wrapped = OpenBaoKeyWrapper(s.openbao_addr, *s.approle("custody-worker"), s.openbao_kek).wrap(
        secret
    )
    eth = Web3EthereumNode(s.eth_rpc_url)
    holder = InMemorySigner.generate().address
    DevChainFaucet(eth.web3).mint_token(s.eth_token_address, holder, 4_242)
    btc = BtcdNode(s.btc_rpc_url, s.btc_rpc_auth(), s.btc_network)
    btc.mine(1)
    height, tip = btc.height(), btc.block_hash(btc.height())
    btc.close()

    custody("stack", "down")

    stack = StackSettings()
    assert _stack_processes(stack.stack_dir) == []
    all_ports = [p for svc in Stack(say=lambda _m: None).services for p in svc.ports().values()]
    assert [p for p in all_ports if _port_open(p)] == []

    custody("stack", "up")

    signer = OpenBaoKeyWrapper(s.openbao_addr, *s.approle("custody-signer"), s.openbao_kek)
    assert signer.unwrap(wrapped) == secret
    assert Web3EthereumNode(s.eth_rpc_url).token_balance(s.eth_token_address, holder) == 4_242
    btc = BtcdNode(s.btc_rpc_url, s.btc_rpc_auth(), s.btc_network)
    assert btc.height() == height
    assert btc.block_hash(height) == tip
    result = asyncio.run(_finish_workflow(s, wf_id))
    assert result.message == "before the restart"
    assert result.released_by == "after-restart"
