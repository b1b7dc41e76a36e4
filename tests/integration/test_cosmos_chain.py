"""The stack's Cosmos SDK chain (simd, two validators): blocks advance on both nodes, the
validators are bonded 90/10, staking and slashing have the genesis parameters the staking
work relies on, and a key funded from the faucet delegates with cosmpy."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cosmpy.aerial.client import LedgerClient, NetworkConfig
from cosmpy.aerial.wallet import LocalWallet

from infra.services.cosmos import SimdA, SimdB
from infra.settings import StackSettings

UATOM = 10**6  # uatom per ATOM; consensus power is bonded tokens / 10**6


@pytest.fixture(scope="module")
def cosmos() -> dict[str, str]:
    """What `custody stack up` publishes for the chain (the nodes' bootstrap, idempotent)."""
    nodes = SimdA(StackSettings()), SimdB(StackSettings())
    if any(node.pid() is None for node in nodes):
        pytest.fail("the Cosmos chain is not up: run `custody stack up simd simd-b`")
    return {k: v for node in nodes for k, v in node.bootstrap(lambda _msg: None).items()}


@pytest.fixture(scope="module")
def rest(cosmos: dict[str, str]) -> Any:
    def get(path: str) -> Any:
        reply = httpx.get(cosmos["CUSTODY_COSMOS_REST_URL"] + path, timeout=10)
        reply.raise_for_status()
        return reply.json()

    return get


def _rpc(url: str, path: str) -> Any:
    reply = httpx.get(url + path, timeout=10)
    reply.raise_for_status()
    return reply.json()["result"]


def _height(url: str) -> int:
    return int(_rpc(url, "/status")["sync_info"]["latest_block_height"])


def test_blocks_advance_on_both_nodes(cosmos: dict[str, str]) -> None:
    a_url, b_url = cosmos["CUSTODY_COSMOS_RPC_URL"], cosmos["CUSTODY_COSMOS_B_RPC_URL"]
    status = _rpc(a_url, "/status")
    assert status["node_info"]["network"] == cosmos["CUSTODY_COSMOS_CHAIN_ID"] == "custody-pos-1"
    start = int(status["sync_info"]["latest_block_height"])
    deadline = time.monotonic() + 10
    while _height(a_url) < start + 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    now = _height(a_url)
    assert now >= start + 3, "fewer than 3 blocks in 10 s (timeout_commit is 1 s)"
    # Validator B's node follows the same chain: the same block hash at a shared height.
    assert abs(_height(b_url) - now) <= 2
    a_block = _rpc(a_url, f"/block?height={now - 1}")["block_id"]["hash"]
    b_block = _rpc(b_url, f"/block?height={now - 1}")["block_id"]["hash"]
    assert a_block == b_block


def test_both_validators_bonded_with_a_holding_more_than_two_thirds(
    cosmos: dict[str, str], rest: Any
) -> None:
    bonded = rest("/cosmos/staking/v1beta1/validators?status=BOND_STATUS_BONDED")["validators"]
    by_operator = {v["operator_address"]: v for v in bonded}
    a, b = cosmos["CUSTODY_COSMOS_VALIDATOR"], cosmos["CUSTODY_COSMOS_VALIDATOR_B"]
    assert set(by_operator) == {a, b}
    assert a.startswith("cosmosvaloper1") and b.startswith("cosmosvaloper1") and a != b
    assert not by_operator[a]["jailed"] and not by_operator[b]["jailed"]

    # Tendermint's voting power per validator matches the staking module's bonded tokens.
    pubkeys = {v["consensus_pubkey"]["key"]: op for op, v in by_operator.items()}
    tm = _rpc(cosmos["CUSTODY_COSMOS_RPC_URL"], "/validators")["validators"]
    power = {pubkeys[v["pub_key"]["value"]]: int(v["voting_power"]) for v in tm}
    assert set(power) == {a, b}
    for op, p in power.items():
        assert p == int(by_operator[op]["tokens"]) // UATOM
    # Genesis: 90 and 10. Tests delegate mostly to A, to B only crumbs (or what earlier
    # runs left); B's may drop by a 10 % downtime slash. A alone must keep more than
    # 2/3, so blocks go on without B.
    assert power[a] >= 90
    assert 9 <= power[b] <= 20
    assert 3 * power[a] > 2 * (power[a] + power[b])


def test_staking_and_slashing_parameters(cosmos: dict[str, str], rest: Any) -> None:
    staking = rest("/cosmos/staking/v1beta1/params")["params"]
    assert staking["unbonding_time"] == "30s"
    assert staking["bond_denom"] == cosmos["CUSTODY_COSMOS_DENOM"] == "uatom"
    slashing = rest("/cosmos/slashing/v1beta1/params")["params"]
    assert slashing["signed_blocks_window"] == "10"
    assert slashing["min_signed_per_window"] == "0.500000000000000000"
    assert slashing["slash_fraction_downtime"] == "0.100000000000000000"
    assert slashing["downtime_jail_duration"] == "60s"
    metadata = rest("/cosmos/bank/v1beta1/denoms_metadata/uatom")["metadata"]
    assert {u["denom"]: u["exponent"] for u in metadata["denom_units"]} == {"uatom": 0, "atom": 6}
    assert cosmos["CUSTODY_COSMOS_DENOM_DECIMALS"] == "6"


def test_a_fresh_key_funded_from_the_faucet_delegates_to_validator_a(
    cosmos: dict[str, str], rest: Any
) -> None:
    faucet_file = Path(cosmos["CUSTODY_COSMOS_FAUCET"])
    assert stat.S_IMODE(faucet_file.stat().st_mode) == 0o600
    faucet = json.loads(faucet_file.read_text())
    denom = cosmos["CUSTODY_COSMOS_DENOM"]
    client = LedgerClient(
        NetworkConfig(
            chain_id=cosmos["CUSTODY_COSMOS_CHAIN_ID"],
            url=cosmos["CUSTODY_COSMOS_GRPC_URL"],
            fee_minimum_gas_price=0,
            fee_denomination=denom,
            staking_denomination=denom,
        )
    )
    prefix = cosmos["CUSTODY_COSMOS_ADDRESS_PREFIX"]
    funder = LocalWallet.from_mnemonic(faucet["mnemonic"], prefix=prefix)
    assert str(funder.address()) == faucet["address"]
    delegator = LocalWallet.generate(prefix=prefix)
    validator = cosmos["CUSTODY_COSMOS_VALIDATOR"]

    funded = client.send_tokens(delegator.address(), 3 * UATOM, denom, funder)
    funded.wait_to_complete(timeout=30)
    assert client.query_bank_balance(delegator.address(), denom) == 3 * UATOM

    amount = 1_234_567
    delegated = client.delegate_tokens(validator, amount, delegator)
    delegated.wait_to_complete(timeout=30)

    # Read back from the chain's REST API (not cosmpy): exactly that delegation, nothing else.
    address = str(delegator.address())
    delegations = rest(f"/cosmos/staking/v1beta1/delegations/{address}")["delegation_responses"]
    assert [(d["delegation"]["validator_address"], d["balance"]) for d in delegations] == [
        (validator, {"denom": denom, "amount": str(amount)})
    ]
    summary = client.query_staking_summary(delegator.address())
    assert [(p.validator, p.amount) for p in summary.current_positions] == [(validator, amount)]
    # The stack's nodes take zero-fee transactions: the rest of the funding is still there.
    assert client.query_bank_balance(delegator.address(), denom) == 3 * UATOM - amount
