"""What the OpenAPI document says beyond the routes' signatures: the answers of a POST
that starts a saga (202 with where to poll, 200 for a replay), and the request rules
the API checks itself (so that it can answer with its own codes) written out as JSON
Schema: asset enums, decimal amounts with the asset's decimals, exactly one of a trade's
`quantity` and `spend`, the known counterparties, IBAN and BIC shapes.

What no schema can say (a balance, an address checksum, whether the bank knows an
account) is refused with 422 and a domain code; docs/api.md lists them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Response
from pydantic import BaseModel, BeforeValidator

from sagas.ledger import EUR
from services.app.trades import TRADABLE
from services.app.withdrawals import WITHDRAWABLE
from services.platform import ASSETS


def integral(value: object) -> object:
    # JSON Schema's integer includes 7.0; strict models then refuse "7" and 7.5.
    return int(value) if isinstance(value, float) and value.is_integer() else value


Integer = Annotated[int, BeforeValidator(integral)]
"""An int field of a strict request model: a JSON integer, 7.0 included."""

LOCATION = {
    "Location": {
        "description": "where to poll the resource (GET) until its saga ends",
        "required": True,
        "schema": {"type": "string"},
    }
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before the first poll",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
}


def started(model: type[BaseModel], what: str) -> dict[int | str, dict[str, Any]]:
    """The responses of a POST that starts a saga and answers at once with its state so far."""
    return {
        202: {
            "model": model,
            "description": f"{what} started (or found still starting): its state so far; "
            "poll Location for the rest",
            "headers": {**LOCATION, **RETRY_AFTER},
        },
        200: {
            "model": model,
            "description": "a replay (the same Idempotency-Key and body): the same resource, "
            "as it is now",
            "headers": {**LOCATION, **RETRY_AFTER},
        },
    }


def poll_at(response: Response, location: str, created: bool) -> None:
    """202 for the call that started the saga, 200 for a replay; both say where to poll."""
    response.status_code = 202 if created else 200
    response.headers["Location"] = location
    response.headers["Retry-After"] = "1"


def decimal(decimals: int, positive: bool = True) -> dict[str, Any]:
    """A decimal string with at most `decimals` decimals, as sagas.money parses it; JSON
    Schema patterns are searched, not matched: `[1-9]` says "not zero"."""
    shape = {"pattern": rf"^(0|[1-9][0-9]*)(\.[0-9]{{1,{decimals}}})?$"}
    if not positive:
        return {"type": "string", **shape}
    return {"type": "string", "allOf": [shape, {"pattern": "[1-9]"}]}


ETH_ADDRESS = {"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$"}
# base58 (P2PKH, P2SH) or bech32/bech32m (segwit) of any network: which one, and the
# checksums, are checked by the API (CUS-3002, CUS-3003).
BTC_ADDRESS = {
    "type": "string",
    "pattern": "^([1-9A-HJ-NP-Za-km-z]{25,35}|[a-z]{2,4}1[02-9ac-hj-np-z]{8,87})$",
}

# A Cosmos SDK account: bech32 (lower case) of a 20- or 32-byte address; the prefix (the
# chain's, CUSTODY_COSMOS_ADDRESS_PREFIX) and the checksum are checked by the API.
COSMOS_ADDRESS = {"type": "string", "pattern": "^[a-z]{1,20}1[02-9ac-hj-np-z]{38,58}$"}
DESTINATIONS = {"ethereum": ETH_ADDRESS, "bitcoin": BTC_ADDRESS, "cosmos": COSMOS_ADDRESS}


def install(app: FastAPI, counterparties: Callable[[], list[str]]) -> None:
    """Have app.openapi() return the document with the rules below written in."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _write_rules(generate(), counterparties())
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def whole(
    base: dict[str, Any],
    title: str,
    props: dict[str, Any],
    required: list[str] | None = None,
    drop: str | None = None,
) -> dict[str, Any]:
    """A oneOf branch that repeats the base's properties and required names (generated
    clients make one complete type per branch); `drop` is a field the branch forbids."""
    properties = {k: copy.deepcopy(v) for k, v in base["properties"].items() if k != drop}
    return {
        "title": title,
        "type": "object",
        "additionalProperties": False,
        "required": [*base.get("required", []), *(required or [])],
        "properties": properties | props,
    }


def _write_rules(doc: dict[str, Any], counterparties: list[str]) -> None:
    schemas = doc["components"]["schemas"]
    assets = list(WITHDRAWABLE)

    wd = schemas["WithdrawalBody"]
    wd["properties"]["asset"]["enum"] = assets
    wd["properties"]["amount"] |= {"pattern": decimal(18)["allOf"][0]["pattern"]}
    wd["oneOf"] = [
        whole(
            wd,
            f"Withdrawal{code}",
            {
                "asset": {"type": "string", "const": code},
                "amount": decimal(asset.decimals),
                "destination": DESTINATIONS[chain],
            },
        )
        for code, (asset, chain) in ASSETS.items()
        if code in WITHDRAWABLE
    ]

    tr = schemas["TradeBody"]
    props = tr["properties"]
    props["asset"]["enum"] = list(TRADABLE)
    for name in ("quantity", "spend", "counterparty"):  # absent, never null
        field = props[name]
        string = next(x for x in field.pop("anyOf") if x.get("type") == "string")
        field |= string
    props["counterparty"]["enum"] = counterparties
    props["counterparty"].pop("maxLength", None)
    tr["oneOf"] = [
        *(
            whole(
                tr,
                f"Trade{code}Quantity",
                {
                    "asset": {"type": "string", "const": code},
                    "quantity": decimal(ASSETS[code][0].decimals),
                },
                required=["quantity"],
                drop="spend",
            )
            for code in TRADABLE
        ),
        whole(
            tr,
            "BuySpend",
            {"side": {"type": "string", "const": "buy"}, "spend": decimal(EUR.decimals)},
            required=["spend"],
            drop="quantity",
        ),
    ]
    tr["description"] = (
        tr.get("description", "") + "\n\nExactly one of `quantity` (in the asset's unit, "
        "at most its decimals) and `spend` (a buy only: EUR, fee included, 2 decimals)."
    )

    schemas["AddressBody"]["properties"]["asset"]["enum"] = assets

    policy = schemas["PolicyBody"]["properties"]
    for name in ("per_transaction_limit", "daily_velocity_limit", "approval_threshold"):
        strings = [x for x in policy[name]["anyOf"] if x.get("type") == "string"]
        strings[0] |= decimal(18, positive=name != "approval_threshold")

    bank = schemas["BankAccountBody"]["properties"]
    bank["iban"]["pattern"] = "^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$"
    bank["bic"]["pattern"] = "^[A-Z]{6}[A-Z0-9]{2}([A-Z0-9]{3})?$"

    for item in doc["paths"].values():
        for op in item.values():
            for param in op.get("parameters", []):
                if param["in"] == "path" and param["name"] == "asset":
                    param["schema"]["enum"] = assets
