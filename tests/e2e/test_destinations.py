"""Issue 11, points 4, 7 and 9 over HTTP and Kafka: a withdrawal to a destination that
burns or loops the money (the zero address, a precompile, the token contract, the hot
wallet, any deposit address of the platform) is refused with CUS-3011, and one under
the asset's minimum (never below the chain's dust limit) with CUS-3012; both before
anything is written: no operation, no ledger entry, no event, the balance as it was."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
from eth_account import Account
from eth_typing import HexStr
from web3 import Web3
from web3.exceptions import TransactionNotFound

from adapters.kafka.bus import KafkaEventBus
from adapters.sqldb import SqlDatabase
from sagas.events import Envelope
from sagas.topics import COMMANDS
from services.cli.request_signing import signed
from services.platform import Platform
from tests.e2e.conftest import (
    ETH,
    USD,
    address,
    balances,
    external_btc_address,
    new_client,
    until_state,
)
from tests.e2e.harness import Running, post, relayed, wait_for

BTC = 10**8
# Configured below BTC's dust limit on purpose: the dust limit must still hold.
PLATFORM = {"min_withdrawal_btc": "100"}


def problem(reply: httpx.Response, code: str) -> dict[str, Any]:
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    body = dict(reply.json())
    assert body["code"] == code and body["status"] == 422, body
    assert body["type"].endswith(code) and body["title"]
    return body


def funded(run: Running, prefix: str) -> tuple[str, Any, Any, dict[str, int]]:
    """A client holding ETH, CTUSD and BTC, credited: (id, operator, client, balances)."""
    client_id, ops, client = new_client(run, prefix)
    eth_at, btc_at = address(client, client_id, "ETH"), address(client, client_id, "BTC")
    token = run.settings.eth_token_address
    sends: dict[str, Callable[[], str]] = {
        "ETH": lambda: run.faucet.fund_eth(eth_at, ETH),
        "CTUSD": lambda: run.faucet.mint_token(token, eth_at, 50 * USD),
    }
    sent = {asset: send() for asset, send in sends.items()}
    run.btc_faucet.fund(btc_at, BTC // 10)
    expected = {"BTC": BTC // 10, "ETH": ETH, "CTUSD": 50 * USD, "ATOM": 0}

    def credited_or_sent_again() -> bool:
        now = balances(client, client_id)
        for asset, send in sends.items():
            # Another e2e module's anvil_reorg on the shared chain drops the blocks it
            # reorganises, funding transactions included: one the node no longer knows,
            # or a mint that did nothing, is sent again; never one that may still land.
            if now[asset] != expected[asset] and not known(run, sent[asset]):
                sent[asset] = send()
        return now == expected

    wait_for(f"{client_id} credited {expected}", credited_or_sent_again, timeout=120)
    return client_id, ops, client, expected


def known(run: Running, tx_hash: str) -> bool:
    """Whether a funding transaction is pending, or mined and did what it should (a mint
    logs a Transfer: right after a reorg anvil may have lost the token's code, and a
    call to an address without code succeeds doing nothing)."""
    eth = run.eth.web3.eth
    try:
        if eth.get_transaction(HexStr(tx_hash)).get("blockNumber") is None:
            return True
        receipt = eth.get_transaction_receipt(HexStr(tx_hash))
    except TransactionNotFound:
        return False
    minted = str(receipt["to"]).lower() == run.settings.eth_token_address.lower()
    return not minted or bool(receipt["logs"])


def written(run: Running, client_id: str) -> tuple[list[Any], list[Any], list[Any]]:
    """The client's withdrawal operations, ledger debits (a deposit only credits it) and
    outbox events naming one of its withdrawals."""
    with SqlDatabase(run.db_url).tx() as conn:
        operations = conn.all(
            "select id from operations where client_id = ? and kind = 'withdrawal'", (client_id,)
        )
        entries = conn.all(
            "select id from ledger_transfers where debit_account like ?",
            (f"client:{client_id}:%",),
        )
        events = conn.all(
            "select event_id from ledger_outbox where payload like ?", (f"%wd:{client_id}:%",)
        )
    return operations, entries, events


def nothing_written(run: Running, client_id: str) -> None:
    assert written(run, client_id) == ([], [], [])


def test_destinations_that_burn_or_loop_money_are_refused_and_nothing_is_written(
    run: Running,
) -> None:
    client_id, ops, client, before = funded(run, "dest")
    other_id, _, other = new_client(run, "dest-other")
    hot = ops.get("/v1/treasury").json()["ethereum_hot_wallet"]
    token = run.settings.eth_token_address
    # The platform's own BTC address for a counterparty's deliveries (no client owns it).
    settlement_btc = Platform(run.settings, run.db_url).settlement_address("lp-alpha", "BTC")

    def w(asset: str, destination: str, amount: str = "0.01") -> dict[str, Any]:
        return {"asset": asset, "amount": amount, "destination": destination}

    zero = "0x" + "00" * 20
    cases = {
        "zero address": w("ETH", zero),
        "zero address (token)": w("CTUSD", zero, "2"),
        "precompile 0x01 (ecrecover)": w("ETH", Web3.to_checksum_address("0x" + "00" * 19 + "01")),
        "precompile 0x0a (point evaluation)": w(
            "ETH", Web3.to_checksum_address("0x" + "00" * 19 + "0a")
        ),
        "reserved 0xff": w("CTUSD", Web3.to_checksum_address("0x" + "00" * 19 + "ff"), "2"),
        "burn 0x...dEaD": w("ETH", Web3.to_checksum_address("0x" + "00" * 18 + "dead")),
        "token contract (token)": w("CTUSD", token, "2"),
        "token contract (ETH)": w("ETH", token),
        "hot wallet (ETH)": w("ETH", hot),
        "hot wallet (token)": w("CTUSD", hot, "2"),
        "another client's ETH deposit address": w("ETH", address(other, other_id, "ETH")),
        "another client's address (token)": w("CTUSD", address(other, other_id, "ETH"), "2"),
        "own ETH deposit address": w("ETH", address(client, client_id, "ETH")),
        "own BTC deposit address": w("BTC", address(client, client_id, "BTC"), "0.001"),
        "another client's BTC deposit address": w("BTC", address(other, other_id, "BTC"), "0.001"),
        "the platform's BTC settlement address": w("BTC", settlement_btc, "0.001"),
    }
    path = f"/v1/clients/{client_id}/withdrawals"
    burnt = run.eth.balance(zero)  # the shared chain's: earlier runs may have burnt some
    answered = {what: post(client, path, body) for what, body in cases.items()}
    wrong = {w: r.text for w, r in answered.items() if r.status_code != 422}
    assert wrong == {}, f"not refused: {wrong}"
    for what, reply in answered.items():
        refused = problem(reply, "CUS-3011")
        assert cases[what]["destination"] in refused["detail"], (what, refused)
    # An operator relaying the client's signed request is refused the same way.
    problem(post(relayed(run, "ops-desk", client_id), path, w("ETH", hot)), "CUS-3011")

    nothing_written(run, client_id)
    assert balances(client, client_id) == before
    assert run.eth.balance(zero) == burnt and run.eth.balance(hot) == 50 * ETH


def test_amounts_under_the_minimum_or_the_dust_limit_are_refused(run: Running) -> None:
    client_id, _ops, client, before = funded(run, "minimum")
    path = f"/v1/clients/{client_id}/withdrawals"
    eth_to, btc_to = Account.create().address, external_btc_address(run.settings.btc_network)
    cases = [
        ("ETH", "0.000999999999999999", eth_to),  # the default minimum is 0.001 ETH
        ("CTUSD", "0.999999", eth_to),  # 1 CTUSD
        # Configured 100 sat here, but a P2WPKH output under 294 sat is dust.
        ("BTC", "0.00000293", btc_to),
        ("BTC", "0.00000101", btc_to),
    ]
    answered = [
        post(client, path, {"asset": asset, "amount": amount, "destination": destination})
        for asset, amount, destination in cases
    ]
    wrong = [r.text for r in answered if r.status_code != 422]
    assert wrong == [], f"not refused: {wrong}"
    for reply in answered:
        assert "minimum" in problem(reply, "CUS-3012")["detail"], reply.text
    nothing_written(run, client_id)
    assert balances(client, client_id) == before

    # At the minimum, the withdrawal is taken.
    for asset, amount, destination in [("ETH", "0.001", eth_to), ("BTC", "0.00000294", btc_to)]:
        body = {"asset": asset, "amount": amount, "destination": destination}
        taken = post(client, path, body)
        assert taken.status_code == 202, taken.text
        done = until_state(client, taken.json()["operation_id"], "completed", "failed", "rejected")
        assert done["state"] == "completed", done  # btcd relays 294 sat to P2WPKH: not dust
    # The negative control of nothing_written: what it looks for is there now.
    operations, entries, events = written(run, client_id)
    assert len(operations) == 2 and len(entries) >= 2 and events


def every_answer(http: Any, client_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every command answer for the client on the events topic, by correlation id."""
    found: dict[str, list[dict[str, Any]]] = {}
    with http.stream(
        "GET", f"/v1/clients/{client_id}/events", params={"from": "beginning", "idle_seconds": 2}
    ) as reply:
        for line in reply.iter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if event["type"].startswith("custody.command."):
                    found.setdefault(event["data"]["correlation_id"], []).append(event)
    return found


def ours(found: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """This platform's answers. The stack's topics are shared: the router of any other
    platform running meanwhile (another e2e module) reads the command too and answers
    that it does not know the client (CUS-3008), under the same deterministic id."""
    kept = {
        command_id: [a for a in answers if not _client_unknown(a["data"])]
        for command_id, answers in found.items()
    }
    return {command_id: answers for command_id, answers in kept.items() if answers}


def _client_unknown(data: dict[str, Any]) -> bool:
    return data.get("code") == "CUS-3008" and str(data.get("detail", "")).startswith("client ")


def test_kafka_commands_are_refused_with_the_same_codes(run: Running) -> None:
    client_id, _ops, client, before = funded(run, "dest-cmd")
    hot = run.http("ops-cmd", "operator").get("/v1/treasury").json()["ethereum_hot_wallet"]
    bus = KafkaEventBus(run.settings.kafka_client("bank"), client_id="bank-core")
    subject = f"client:{client_id}:commands"

    def command(key: str, asset: str, amount: str, destination: str) -> Envelope:
        body = {"asset": asset, "amount": amount, "destination": destination}
        request = signed(
            run.client_key(client_id),
            "POST",
            f"/v1/clients/{client_id}/withdrawals",
            json.dumps(body).encode(),
        )
        data = {
            "client_id": client_id,
            "idempotency_key": key,
            "requested_by": "bank-core-system",
            **body,
            "request": request.model_dump(mode="json"),
        }
        return Envelope(
            source="/bank/core",
            type="custody.command.withdrawal.create.v1",
            subject=subject,
            data=data,
        )

    sent = [
        (command("zero", "ETH", "0.01", "0x" + "00" * 20), "CUS-3011"),
        (command("hot", "CTUSD", "2", hot), "CUS-3011"),
        (command("own", "BTC", "0.001", address(client, client_id, "BTC")), "CUS-3011"),
        (command("small", "ETH", "0.0001", Account.create().address), "CUS-3012"),
    ]
    expected = {c.id: code for c, code in sent}
    for c, _code in sent:
        bus.publish(COMMANDS.name, c)
    got = wait_for(
        "answers to the commands",
        lambda: (a := ours(every_answer(client, client_id))) and set(expected) <= set(a) and a,
    )
    for command_id, code in expected.items():
        assert [(a["type"], a["data"].get("code")) for a in got[command_id]] == [
            ("custody.command.rejected.v1", code)
        ], got[command_id]
    nothing_written(run, client_id)
    assert balances(client, client_id) == before
