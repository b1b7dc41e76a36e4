"""The OpenAPI document says what the API does: schemathesis with every check (status
codes, content types, response headers and schemas, schema-valid data accepted and
schema-violating data refused, missing headers, unsupported methods and Allow, auth,
links) as an operator and as a client, against real ids, ends with no failure.

One allowance, narrowed by tests/e2e/schemathesis_hooks.py: a schema-valid withdrawal,
trade or bank account may be refused with 422 when the reason is one no schema can
state (a balance, a checksum, a minimum, the bank's books); see docs/api.md.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account

from tests.e2e.conftest import ETH, address, credited, new_client
from tests.e2e.harness import Running, post, wait_for
from tests.simulators import BIC, cash_in, new_iban, open_bank_account

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_POSITIVE = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
# Examples per operation and role (both roles run at once, each on its own connection).
EXAMPLES = os.environ.get("CUSTODY_SCHEMATHESIS_EXAMPLES", "20")
DEFAULT_NEGATIVE = ["400", "401", "403", "404", "405", "406", "409", "415", "422", "428"]


def seeded(run: Running) -> dict[str, str]:
    """A funded client with a policy and a bank account, a withdrawal, a quoted trade and
    a settlement, each past its saga's first step: their ids go into the paths."""
    client_id, ops, client = new_client(run, "fuzz")
    where = address(client, client_id, "ETH")
    run.faucet.fund_eth(where, ETH)
    credited(run, client, client_id, {"ETH": ETH})
    run.govern(ops.put(f"/v1/clients/{client_id}/policies/ETH", json={"approval_threshold": "0"}))
    iban = new_iban()
    open_bank_account(run.settings.bank_url, iban, f"Client {client_id}")
    cash_in(run.settings.bank_url, iban, 100_000)
    run.govern(ops.put(f"/v1/clients/{client_id}/bank-account", json={"iban": iban, "bic": BIC}))

    def moved(path: str) -> Any:
        found = ops.get(path).json()
        return found if found["state"] != "requested" else None

    body = {"asset": "ETH", "amount": "0.01", "destination": Account.create().address}
    started = post(client, f"/v1/clients/{client_id}/withdrawals", body)
    wd_path = f"/v1/withdrawals/{started.json()['operation_id']}"
    wd = wait_for("the withdrawal", lambda: moved(wd_path), timeout=60)
    buy = {"side": "buy", "asset": "BTC", "quantity": "0.001"}
    trade = post(client, f"/v1/clients/{client_id}/trades", buy)
    tr_path = f"/v1/trades/{trade.json()['operation_id']}"
    tr = wait_for("the quote", lambda: moved(tr_path), timeout=60)
    key = f"fuzz-{uuid.uuid4().hex[:8]}"  # workflow ids outlive a test's database
    assert post(ops, "/v1/settlements", {}, key).status_code == 202
    st = wait_for("the settlement", lambda: moved(f"/v1/settlements/st:{key}"), timeout=60)
    return {
        "client_id": client_id,
        "withdrawal": wd["operation_id"],
        "trade": tr["operation_id"],
        "settlement": st["settlement_id"],
    }


def config(ids: dict[str, str]) -> str:
    """schemathesis.toml: real ids per path, and the two allowances the module names."""
    q = json.dumps  # TOML basic strings take JSON's escapes
    return f"""
[parameters]
"path.client_id" = {q(ids["client_id"])}
"path.asset" = "ETH"

[[operations]]
include-path-regex = "^/v1/(withdrawals|sagas)/"
[operations.parameters]
"path.operation_id" = {q(ids["withdrawal"])}
"path.workflow_id" = {q(ids["withdrawal"])}

[[operations]]
include-path-regex = "^/v1/trades/"
parameters = {{ "path.operation_id" = {q(ids["trade"])} }}

[[operations]]
include-path-regex = "^/v1/settlements/"
parameters = {{ "path.settlement_id" = {q(ids["settlement"])} }}

# Refusals on the merits (balance, checksums, minimums, the bank): 422, codes checked
# by the hook `refused_only_on_the_merits`.
[[operations]]
include-path-regex = "/(withdrawals|trades|bank-account|proposals|approvals|stakes|unstake)$"
include-method-regex = "^(POST|PUT)$"
checks.positive_data_acceptance.expected-statuses = {q([*DEFAULT_POSITIVE, "422"])}

# A body over the API's 64 KiB limit is refused with 413 before it is parsed: a rejection.
[checks.negative_data_rejection]
expected-statuses = {q([*DEFAULT_NEGATIVE, "413", "429", "5xx"])}
"""


def schemathesis(run: Running, token: str, toml: Path, workdir: Path) -> subprocess.Popen[str]:
    """schemathesis started as `token`'s holder, its report in `workdir` (see `finished`)."""
    workdir.mkdir()
    seed = os.environ.get("CUSTODY_SCHEMATHESIS_SEED", "5")
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "--config-file",
            str(toml),
            "run",
            f"{run.base_url}/openapi.json",
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {token}",
            "--max-examples",
            EXAMPLES,
            "--exclude-path-regex",
            "/events$",  # an endless stream by design; tests/e2e/test_custody_flow.py reads it
            "--seed",
            seed,
            "--workers",
            "1",
            "--report-dir",
            str(workdir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=workdir,  # its cache of past failures stays out of the checkout
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": "tests.e2e.schemathesis_hooks",
            "PYTHONPATH": str(ROOT),
        },
    )


def finished(who: str, proc: subprocess.Popen[str]) -> str:
    """Its output, once it ended with no failure."""
    stdout, stderr = proc.communicate(timeout=600)
    print(f"--- schemathesis as {who}\n{stdout[-3000:]}")
    assert proc.returncode == 0, stdout[-8000:] + stderr[-2000:]
    assert "❌" not in stdout, stdout[-8000:]
    return stdout


POSTS = {
    "/v1/clients",
    "/v1/clients/{client_id}/deposit-addresses",
    "/v1/clients/{client_id}/withdrawals",
    "/v1/withdrawals/{operation_id}/approvals",
    "/v1/withdrawals/{operation_id}/decisions",
    "/v1/clients/{client_id}/trades",
    "/v1/trades/{operation_id}/accept",
    "/v1/settlements",
    "/v1/governance/proposals",
    "/v1/governance/proposals/{proposal_id}/approvals",
    "/v1/clients/{client_id}/stakes",
    "/v1/stakes/{stake_id}/unstake",
    "/v1/stakes/{stake_id}/redelegate",
    "/v1/stakes/{stake_id}/approvals",
    "/v1/unstakes/{unstake_id}/approvals",
}


def test_the_document_requires_the_key_and_one_amount_per_trade(run: Running) -> None:
    """What a generated client (openapi-python-client) needs to stop its user forgetting
    the key or sending both amounts: checked on the live document."""
    doc = httpx.get(f"{run.base_url}/openapi.json", timeout=10).json()
    posts = [(p, ops["post"]) for p, ops in doc["paths"].items() if "post" in ops]
    # Named, not counted: a new POST has to be added here on purpose, and is then held to
    # the key and the bearer below.
    assert {p for p, _ in posts} == POSTS, sorted({p for p, _ in posts} ^ POSTS)
    for path, op in posts:
        (key,) = [x for x in op["parameters"] if x["name"] == "Idempotency-Key"]
        assert key["in"] == "header" and key["required"] is True, path
        assert key["schema"]["type"] == "string" and "anyOf" not in key["schema"], path
        assert key["schema"]["pattern"] == "^[A-Za-z0-9._-]{1,64}$", path
        assert op["security"] == [{"HTTPBearer": []}], path
    trade = doc["components"]["schemas"]["TradeBody"]
    branches = {b["title"]: b for b in trade["oneOf"]}
    assert set(branches) == {"TradeBTCQuantity", "TradeETHQuantity", "BuySpend"}
    for title, b in branches.items():
        amount = "spend" if title == "BuySpend" else "quantity"
        other = "quantity" if title == "BuySpend" else "spend"
        assert amount in b["required"] and other not in b["properties"], title
        assert b["additionalProperties"] is False, title
    replay = doc["paths"]["/v1/clients"]["post"]["responses"]
    assert {"200", "201"} <= set(replay), replay
    for path in ("/v1/clients/{client_id}/withdrawals", "/v1/clients/{client_id}/trades"):
        answers = doc["paths"][path]["post"]["responses"]
        assert answers["202"]["headers"]["Location"]["required"] is True, path
        assert "200" in answers, path


# Two roles over every operation at once, EXAMPLES each: longer than the tier's 300 s
# default.
@pytest.mark.timeout(900)
def test_schemathesis_all_checks_pass_as_operator_and_as_client(
    run: Running, tmp_path: Path
) -> None:
    ids = seeded(run)
    toml = tmp_path / "schemathesis.toml"
    toml.write_text(config(ids))
    operator = run.token("ops-fuzz", "operator")
    client = run.token("user-fuzz", "client", ids["client_id"])
    started = {who: schemathesis(run, token, toml, tmp_path / who)
               for who, token in (("operator", operator), ("client", client))}  # fmt: skip
    for who, proc in started.items():
        out = finished(who, proc)
        selected = re.search(r"Selected: (\d+)/", out)
        tested = re.search(r"Tested: (\d+)", out)
        assert selected and tested and selected[1] == tested[1], out[-3000:]  # none skipped
