"""The custody scenario of `custody demo`: the whole platform as processes, driven over
its REST API as a bank would, on the local stack's chains.

A client is onboarded, gets deposit addresses, receives BTC, ETH and the test token
(credited only once final), withdraws some of each (one above its approval threshold,
released by two operators signing its intent with their own keys); then the
client's balances, the platform's accounts and the chains are compared. The client
then buys BTC and ETH with EUR from its bank account and sells some back, and the
trades are settled with the liquidity providers (delivery versus payment) and
reconciled. Meanwhile the client stakes ATOM, a reward is claimed and booked on the
schedule, and it unstakes once the chain's unbonding is over. Last, the events and the
audit chain are printed and verified.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from bitcoin.wallet import CBitcoinSecret, P2WPKHBitcoinAddress
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account

from adapters.chains.bitcoin.networks import select_network
from adapters.sqldb import SqlDatabase
from sagas.banking import make_iban
from sagas.intents import Intent, sign_intent
from sagas.money import format_units
from services.runner import Running
from services.settings import PlatformSettings

ETH, USD, BTC, ATOM = 10**18, 10**6, 10**8, 10**6
DEMO_STAKING = {
    "staking_rewards_every_seconds": "15",
    "staking_min_claim": "5000",
    "signer_cosmos_claim_every_seconds": "5",
    "staking_watch_every_seconds": "10",
}


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _post(http: httpx.Client, path: str, body: Any) -> httpx.Response:
    return http.post(path, json=body, headers={"Idempotency-Key": uuid.uuid4().hex})


def _external_btc_address(network: str) -> str:
    select_network(network)
    key = CBitcoinSecret.from_secret_bytes(uuid.uuid4().bytes * 2)
    return str(P2WPKHBitcoinAddress.from_scriptPubKey(_p2wpkh(key.pub)))


def _p2wpkh(pub: bytes) -> Any:
    from bitcoin.core import Hash160
    from bitcoin.core.script import OP_0, CScript

    return CScript([OP_0, Hash160(pub)])


def _balances(http: httpx.Client, client_id: str) -> dict[str, dict[str, str]]:
    return {b["asset"]: b for b in http.get(f"/v1/clients/{client_id}/balances").json()}


def run_scenario(settings: PlatformSettings) -> None:
    name = f"custody_demo_{datetime.now(UTC):%Y%m%d%H%M%S}"
    admin = settings.postgres_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = settings.postgres_url.rsplit("/", 1)[0] + f"/{name}"
    workdir = Path(str(settings.api_token_secret_file)).parent / "demo" / name
    workdir.mkdir(parents=True, exist_ok=True)
    # Rewards claimed every few seconds (a day in production), so the demo shows one.
    run = Running(settings, url, workdir, **DEMO_STAKING)
    try:
        _step(f"Platform: signer, worker, router, relay, chain watchers, API (database {name})")
        run.up()
        print(f"API on {run.base_url} (OpenAPI at /docs); process logs in {workdir}")
        _scenario(run)
    finally:
        run.down()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


def _scenario(run: Running) -> None:
    s = run.settings
    token = s.eth_token_address
    ops1 = run.http("ops-anna", "operator")
    client_id = f"demo-{uuid.uuid4().hex[:6]}"

    _step("Onboarding: an operator opens the client and its accounts")
    reply = _post(ops1, "/v1/clients", {"client_id": client_id, "name": "Demo Client AG"})
    print(
        f"POST /v1/clients -> {reply.status_code}; accounts: "
        + ", ".join(b["account_id"] for b in reply.json()["balances"])
    )
    client = run.http("treasurer@demo-client", "client", client_id)

    _step("Deposit addresses (derived from the platform wallet's xpubs; no secret involved)")
    where = {}
    for asset in ("BTC", "ETH", "CTUSD"):
        body = _post(client, f"/v1/clients/{client_id}/deposit-addresses", {"asset": asset}).json()
        where[asset] = body["address"]
        print(
            f"{asset:6} {body['address']} ({body['chain']}"
            + (f"; {body['note']})" if body["note"] else ")")
        )

    _step("Treasury: the platform funds its Ethereum hot wallet on chain")
    lanes = ops1.get("/v1/treasury").json()["ethereum_hot_lanes"]
    for hot in lanes:
        run.faucet.fund_eth(hot, 20 * ETH)
        run.faucet.mint_token(token, hot, 5_000 * USD)

    def treasury() -> dict[str, int]:
        accounts = ops1.get("/v1/treasury").json()["accounts"]
        return {a["account_id"]: int(a["total_minor"]) for a in accounts}

    run.wait("the top-up booked", lambda: treasury()["treasury:CTUSD"] == len(lanes) * 5_000 * USD)
    for hot in lanes:
        print(f"hot wallet {hot}: 20 ETH and 5000 CTUSD booked to treasury:ETH / treasury:CTUSD")

    _step("Deposits: sent on chain, seen by the watchers, credited only once final")
    run.miner.pause()
    run.faucet.fund_eth(where["ETH"], 3 * ETH)
    run.faucet.mint_token(token, where["CTUSD"], 1_000 * USD)
    run.btc_faucet.fund(where["BTC"], 3 * BTC // 2)
    run.btc.mine(1)

    def deposits() -> list[dict[str, Any]]:
        return list(client.get(f"/v1/clients/{client_id}/deposits").json())

    run.wait("three deposits seen", lambda: len(deposits()) == 3)
    print(
        "seen:     " + ", ".join(f"{d['asset']} {d['amount']} ({d['state']})" for d in deposits())
    )
    print(
        "balances: "
        + ", ".join(f"{a} {b['total']}" for a, b in _balances(client, client_id).items())
        + "   <- nothing credited before finality"
    )
    run.miner.start()
    run.wait("credited", lambda: all(d["state"] == "credited" for d in deposits()))
    print(
        "final:    "
        + ", ".join(f"{a} {b['total']}" for a, b in _balances(client, client_id).items())
    )

    _step("Policy: ETH withdrawals above 1 ETH need two operators (the requester never counts)")
    reply = ops1.put(
        f"/v1/clients/{client_id}/policies/ETH",
        json={"approval_threshold": "1", "approval_quorum": 2},
    )
    proposal = reply.json()
    print(
        f"PUT policy -> {reply.status_code}: governance proposal {proposal['id']}, intent hash "
        f"{proposal['intent_hash'][:16]}... (not in force until two operators sign it)"
    )
    applied = run.govern(reply, "alice", "bob")
    policy = ops1.get(f"/v1/clients/{client_id}/policies/ETH").json()
    print(
        f"alice and bob signed with their own keys -> record {applied['seq']} of the "
        f"governance chain: policy version {policy['version']}: {policy['rules']}"
    )

    _step("Withdrawals to external addresses")
    eth_out = Account.create().address
    btc_out = _external_btc_address(s.btc_network)
    asks = [
        ("ETH", "0.4", eth_out),
        ("BTC", "0.25", btc_out),
        ("CTUSD", "250.5", eth_out),
        ("ETH", "1.2", eth_out),
    ]
    ids = []
    for asset, amount, destination in asks:
        reply = _post(
            client,
            f"/v1/clients/{client_id}/withdrawals",
            {"asset": asset, "amount": amount, "destination": destination},
        )
        body = reply.json()
        ids.append(body["operation_id"])
        print(
            f"POST withdrawal {amount} {asset} -> {reply.status_code} {body['state']}"
            f" ({body['operation_id']})"
        )
    big = ids[-1]
    run.wait(
        "the big one awaiting approval",
        lambda: client.get(f"/v1/withdrawals/{big}").json()["state"] == "awaiting_approval",
    )
    print(f"{big}: awaiting_approval (rule approval_threshold)")
    shown = client.get(f"/v1/withdrawals/{big}/intent").json()
    intent = Intent.model_validate(shown["intent"], strict=False)
    print(
        f"its intent (what operators sign): {intent.amount} wei to {intent.destination}, "
        f"hash {shown['intent_hash'][:16]}..., {shown['approvals_required']} approvals needed"
    )
    by_alice = sign_intent(intent, run.operator_key("alice")).model_dump()
    mine = _post(client, f"/v1/withdrawals/{big}/approvals", by_alice)
    print(
        f"the client handing in an approval -> {mine.status_code} {mine.json()['code']}"
        f" {mine.json()['title']}"
    )
    forged = sign_intent(intent, Ed25519PrivateKey.generate()).model_dump()
    with run.http("alice", "operator") as alice:
        bad = _post(alice, f"/v1/withdrawals/{big}/approvals", forged)
    print(f"an approval by a key governance never registered -> {bad.status_code} "
          f"{bad.json()['code']} {bad.json()['title']}")  # fmt: skip
    for name in ("alice", "alice", "bob"):
        reply = run.approve(big, name)
        body = reply.json()
        if reply.status_code == 200:
            said = f"approvers {body['approvers']}, complete: {body['complete']}"
        else:
            said = f"{body['code']} {body['detail']}"
        print(f"{name} signs the intent with their own key -> {reply.status_code} {said}")

    def finished() -> bool:
        return all(
            client.get(f"/v1/withdrawals/{i}").json()["state"] in ("completed", "failed")
            for i in ids
        )

    run.wait("the withdrawals final", finished, timeout=180)
    for op_id in ids:
        w = client.get(f"/v1/withdrawals/{op_id}").json()
        steps = " > ".join(st["step"] for st in w["timeline"])
        print(
            f"{w['amount']:>6} {w['asset']:5} {w['state']:9} tx {w['tx_hash'][:18]}..."
            f" fee {w['fee_minor']} (minor units)"
        )
        print(f"       {steps}")

    _step("Balances: the client's ledger, the platform's accounts, and the chains")
    for asset, b in _balances(client, client_id).items():
        print(f"client {asset:6} total {b['total']:>10}  available {b['available']:>10}")
    t = treasury()
    with SqlDatabase(run.db_url).tx() as conn:
        utxos = conn.all("select amount from btc_utxos where spent_by is null")
    chain = {
        "ETH": run.eth.balance(where["ETH"]) + sum(run.eth.balance(h) for h in lanes),
        "CTUSD": run.eth.token_balance(token, where["ETH"])
        + sum(run.eth.token_balance(token, h) for h in lanes),
        "BTC": sum(int(r[0]) for r in utxos),
    }
    for asset, held in chain.items():
        books = -t[f"omnibus:{asset}"]
        print(
            f"{asset:6} on chain {held} = omnibus {books} (minor units): "
            + ("OK" if held == books else "MISMATCH")
        )
        if held != books:
            raise SystemExit(f"{asset}: chain and books disagree")
    print(
        f"external: {run.eth.balance(eth_out)} wei, "
        f"{run.eth.token_balance(token, eth_out)} CTUSD units at {eth_out}"
    )

    stake_id = _stake(run, client_id, client)
    _trading(run, client_id, client)
    _unstake(run, client_id, client, stake_id)

    _step("Events: the client's stream (server-sent events over the API)")
    counts: Counter[str] = Counter()
    with client.stream(
        "GET", f"/v1/clients/{client_id}/events", params={"from": "beginning", "idle_seconds": 3}
    ) as reply:
        for line in reply.iter_lines():
            if line.startswith("event: "):
                counts[line[7:]] += 1
    for kind, n in sorted(counts.items()):
        print(f"{n:3}  {kind}")

    _step("Audit: every event chained (by the platform's audit writer), signed and verified")
    env = run.env
    print(run.audit_caught_up(timeout=600))
    verified = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    print(
        verified.stdout.strip().splitlines()[-1]
        if verified.stdout.strip()
        else verified.stderr[-500:]
    )
    if verified.returncode != 0:
        raise SystemExit("the audit chain did not verify")


def _stake(run: Running, client_id: str, client: httpx.Client) -> str:
    _step("Staking: the client deposits ATOM and stakes 20 with the platform's validator")
    delegator = _post(
        client, f"/v1/clients/{client_id}/deposit-addresses", {"asset": "ATOM"}
    ).json()["address"]
    run.cosmos_faucet.fund((delegator, 30 * ATOM))
    run.wait(
        "the ATOM deposit credited",
        lambda: _balances(client, client_id).get("ATOM", {}).get("total_minor") == str(30 * ATOM),
    )
    print(f"ATOM   30 credited at {delegator} (the client's own delegator address)")
    validators = client.get("/v1/staking/validators").json()
    validator = validators[0]["operator_address"]
    print(f"validators clients may delegate to: {[v['operator_address'] for v in validators]}")
    body = {"asset": "ATOM", "amount": "20", "validator": validator}
    started = _post(client, f"/v1/clients/{client_id}/stakes", body).json()
    stake = _until(client, f"/v1/stakes/{started['stake_id']}", ("active", "failed", "rejected"))
    steps = " > ".join(st["step"] for st in stake["timeline"])
    print(
        f"stake {stake['amount']} ATOM -> {stake['state']} (position {stake['position']}), "
        f"tx {str(stake['tx_hash'])[:18]}..., fee {stake['fee_minor']} uatom\n       {steps}"
    )
    if stake["state"] != "active":
        raise SystemExit(f"the stake did not delegate: {stake['error_code']}")
    return str(stake["stake_id"])


def _unstake(run: Running, client_id: str, client: httpx.Client, stake_id: str) -> None:
    _step("Staking: rewards claimed on the schedule and booked, then the client unstakes")

    def rewards() -> list[dict[str, Any]]:
        timeline = client.get(f"/v1/stakes/{stake_id}").json()["timeline"]
        return [
            st["detail"]
            for st in timeline
            if st["step"].startswith("rewards:") and st["detail"]["state"] == "booked"
        ]

    run.wait("a reward booked", lambda: rewards(), timeout=120)
    for r in rewards():
        print(
            f"reward claimed in tx {str(r['tx_hash'])[:18]}...: gross {r['gross']} uatom (what "
            f"the chain paid), fee {r['fee']}, commission {r['commission']} (10 %, rounded "
            f"down), net {r['net']} to the client"
        )
    reply = _post(client, f"/v1/stakes/{stake_id}/unstake", {"amount": "20"})
    unstake_id = reply.json()["unstake_id"]
    unbonding = _until(client, f"/v1/unstakes/{unstake_id}", ("unbonding", "completed", "failed"))
    print(
        f"unstake 20 ATOM -> {unbonding['state']} until {unbonding['completion_time']} "
        "(the chain's unbonding time: 30 s here, 21 days on the Cosmos Hub)"
    )
    done = _until(client, f"/v1/unstakes/{unstake_id}", ("completed", "failed"), timeout=180)
    print(f"unstake {done['state']}: released {done['released_minor']} uatom to available")
    stake = client.get(f"/v1/stakes/{stake_id}").json()
    print(f"position {stake['position']}; " + " > ".join(
        st["step"].split(":")[0] for st in stake["timeline"]
    ))  # fmt: skip
    ops = run.http("ops-staking", "operator")
    books = {
        a["account_id"]: int(a["total_minor"]) for a in ops.get("/v1/treasury").json()["accounts"]
    }
    delegator = stake["delegator"]
    held = run.cosmos.balance(delegator) + run.cosmos.delegation(delegator, stake["validator"])
    omnibus = -books["omnibus:ATOM"]
    print(
        f"ATOM   on chain {held} = omnibus {omnibus} (uatom): "
        + ("OK" if held == omnibus else "MISMATCH")
    )
    if held != omnibus:
        raise SystemExit("ATOM: chain and books disagree")


def _until(http: httpx.Client, path: str, done: tuple[str, ...], timeout: float = 300) -> Any:
    deadline = datetime.now(UTC).timestamp() + timeout
    while datetime.now(UTC).timestamp() < deadline:
        found = http.get(path).json()
        if found.get("state") in done:
            return found
        time.sleep(0.5)
    raise SystemExit(f"{path} did not reach {done} in {timeout:.0f} s")


def _trading(run: Running, client_id: str, client: httpx.Client) -> None:
    s = run.settings
    ops = run.http("ops-trading", "operator")
    _step("Trading: the client buys BTC and ETH with EUR from its bank account, sells some back")
    iban = make_iban("DE", f"5001051777{uuid.uuid4().int % 10**8:08d}")
    # What the bank does on its side: the client's account, with 5,000.00 EUR on it.
    httpx.put(
        f"{s.bank_url}/v1/accounts/{iban}",
        json={"bic": "SIMUDEFFXXX", "name": f"Client {client_id}", "currency": "EUR"},
        timeout=10,
    ).raise_for_status()
    httpx.post(
        f"{s.bank_url}/v1/accounts/{iban}/cash-in",
        json={"amount": 500_000, "end_to_end_id": f"salary-{client_id}"[:35]},
        headers={"Idempotency-Key": f"demo-cash-{iban}"},
        timeout=10,
    ).raise_for_status()
    reply = ops.put(
        f"/v1/clients/{client_id}/bank-account", json={"iban": iban, "bic": "SIMUDEFFXXX"}
    )
    run.govern(reply, "bob", "carol")
    account = ops.get(f"/v1/clients/{client_id}/bank-account").json()
    print(
        f"bank account {iban} proposed, approved by bob and carol: "
        f"{account['available']} EUR available"
    )
    ended = ("completed", "rejected", "expired")

    def show(t: dict[str, Any]) -> None:
        steps = " -> ".join(x["step"] for x in t["timeline"])
        print(
            f"{t['side']:4} {t['quantity']} {t['asset']} from {t['counterparty']} at "
            f"{t['price']} EUR: provider {t['provider_amount']} + fee {t['fee']} -> client "
            f"{t['client_amount']} EUR  [{t['state']}]\n       {steps}"
        )

    btc = _post(
        client,
        f"/v1/clients/{client_id}/trades",
        {"side": "buy", "asset": "BTC", "spend": "250.00", "auto_accept": True},
    ).json()
    btc = _until(client, f"/v1/trades/{btc['operation_id']}", ended)
    show(btc)
    started = _post(
        client,
        f"/v1/clients/{client_id}/trades",
        {"side": "buy", "asset": "ETH", "quantity": "0.05"},
    )
    # The POST answers at once (202, `requested`); the quote is polled at Location.
    eth = _until(client, started.headers["Location"], ("quoted", *ended))
    if eth["state"] != "quoted":
        raise SystemExit(f"no quote for 0.05 ETH: {eth['state']} {eth['error_code']}")
    print(
        f"quote for 0.05 ETH: {eth['client_amount']} EUR, valid until {eth['quote_expires_at']}; "
        "the client accepts"
    )
    _post(client, f"/v1/trades/{eth['operation_id']}/accept", {}).raise_for_status()
    show(_until(client, f"/v1/trades/{eth['operation_id']}", ended))
    half = format_units(int(btc["quantity_minor"]) // 2, 8)
    sale = _post(
        client,
        f"/v1/clients/{client_id}/trades",
        {"side": "sell", "asset": "BTC", "quantity": half, "auto_accept": True},
    ).json()
    show(_until(client, f"/v1/trades/{sale['operation_id']}", ended))
    account = client.get(f"/v1/clients/{client_id}/bank-account").json()
    print(f"bank account now: {account['booked']} EUR booked, {account['held']} held")

    _step("Settlement: net per counterparty and asset, delivery versus payment, reconciliation")
    key = f"demo-{uuid.uuid4().hex[:8]}"
    reply = ops.post("/v1/settlements", json={}, headers={"Idempotency-Key": key})
    reply.raise_for_status()
    done = _until(
        ops,
        f"/v1/settlements/st:{key}",
        ("settled", "partly_settled", "compensated", "nothing_to_settle"),
    )
    for part in done["instructions"]:
        legs = ", ".join(
            f"{leg['asset']} {leg['amount_minor']} paid by the {leg['payer']}"
            for leg in part["legs"]
        )
        print(f"{part['counterparty']}: {part['trades']} trade(s) -> {legs}")
    print(
        f"settlement {done['settlement_id']}: {done['state']}; "
        f"reconciliation breaks: {done['breaks']}"
    )
    for p in ops.get("/v1/liquidity/positions").json():
        if p["unsettled_trades"] or p["ledger_minor"] != "0":
            print(f"  open: {p}")
    if done["state"] != "settled" or done["breaks"]:
        raise SystemExit("the settlement did not settle cleanly")
