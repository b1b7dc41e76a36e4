"""ATOM deposits over HTTP on the real stack, as a bank sees them: a client's ATOM address
(its own bech32 address, the same on every call), funded on the Cosmos chain, is credited
once to the client's ATOM balance to the uatom, with the deposit's events on Kafka (read
back through the API's event stream); the omnibus account matches the chain. The chain
watcher started again from below the deposit's block reads the same transaction again
and credits nothing more."""

from __future__ import annotations

import json
import time
from typing import Any

from adapters.sqldb import SqlDatabase
from tests.e2e.conftest import address, balances, credited, new_client
from tests.e2e.harness import Running, post, wait_for

AMOUNT = 12_345_678  # 12.345678 ATOM: every one of its six decimals shows


def client_events(http: Any, client_id: str) -> list[dict[str, Any]]:
    """The client's events from the beginning, through the API's event stream."""
    events = []
    with http.stream(
        "GET", f"/v1/clients/{client_id}/events", params={"from": "beginning", "idle_seconds": 4}
    ) as reply:
        assert reply.status_code == 200
        for line in reply.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return events


def deposit_events(http: Any, client_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (e["type"], e["data"])
        for e in client_events(http, client_id)
        if e["type"].startswith("custody.deposit.")
    ]


def test_an_atom_deposit_is_credited_once_to_the_uatom(run: Running) -> None:
    client_id, ops, client = new_client(run, "atom")
    reply = post(client, f"/v1/clients/{client_id}/deposit-addresses", {"asset": "ATOM"})
    assert reply.status_code == 201, reply.text
    assert (reply.json()["asset"], reply.json()["chain"]) == ("ATOM", "cosmos")
    where = str(reply.json()["address"])
    assert where.startswith("cosmos1") and where == where.lower()
    assert address(client, client_id, "ATOM") == where  # the same on every call
    assert address(client, client_id, "ETH") != where  # not shared with another chain
    assert balances(client, client_id)["ATOM"] == 0

    funded = run.cosmos_faucet.fund((where, AMOUNT))
    assert run.cosmos.balance(where) == AMOUNT
    credited(run, client, client_id, {"ATOM": AMOUNT})
    operation_id = f"deposit:cosmos:{funded.tx_hash}:msg0"
    deposits = client.get(f"/v1/clients/{client_id}/deposits").json()
    assert [(d["operation_id"], d["state"]) for d in deposits] == [(operation_id, "credited")]
    treasury = {
        a["account_id"]: int(a["total_minor"]) for a in ops.get("/v1/treasury").json()["accounts"]
    }
    assert treasury["omnibus:ATOM"] == -AMOUNT == -run.cosmos.balance(where)

    # The deposit's events, from Kafka: seen, then credited to the client's ATOM account.
    events = deposit_events(client, client_id)
    assert [t for t, _ in events] == ["custody.deposit.seen.v1", "custody.deposit.credited.v1"]
    for _type, data in events:
        assert (data["operation_id"], data["chain"], data["asset"], data["amount"]) == (
            operation_id,
            "cosmos",
            "ATOM",
            str(AMOUNT),
        )
        assert (data["tx_hash"], data["position"], data["address"]) == (
            funded.tx_hash,
            "msg0",
            where,
        )
    assert events[-1][1]["account"] == f"client:{client_id}:ATOM"

    # The watcher, killed and started again below the deposit's block (its position
    # there forgotten), reads the same transaction again.
    run.kill("watch-cosmos")
    below = funded.height - 1
    with SqlDatabase(run.db_url).tx(write=True) as conn:
        conn.run("delete from chain_blocks where chain = 'cosmos' and height >= ?", (below,))
    run.start_watcher("cosmos", start_height=below)

    def read_again() -> bool:
        with SqlDatabase(run.db_url).tx() as conn:
            rows = conn.all(
                "select height from chain_blocks where chain = 'cosmos' and height >= ?", (below,)
            )
        heights = {int(r[0]) for r in rows}
        return below in heights and max(heights) > funded.height + 2

    wait_for("the watcher past the deposit's block again", read_again, timeout=60)
    time.sleep(5)  # time for anything it set off (router, saga) to have happened
    assert balances(client, client_id)["ATOM"] == AMOUNT  # credited once
    deposits = client.get(f"/v1/clients/{client_id}/deposits").json()
    assert [(d["operation_id"], d["state"]) for d in deposits] == [(operation_id, "credited")]
    with SqlDatabase(run.db_url).tx() as conn:
        observed = conn.all(
            "select position, amount, state from chain_observations where tx_hash = ?",
            (funded.tx_hash,),
        )
    assert [(p, int(a), s) for p, a, s in observed] == [("msg0", AMOUNT, "final")]
    assert [t for t, _ in deposit_events(client, client_id)] == [
        "custody.deposit.seen.v1",
        "custody.deposit.credited.v1",
    ]
