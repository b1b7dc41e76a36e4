"""A reference liquidity provider, hosting several counterparties (`/v1/lp/<name>/...`):
a price feed with a spread, firm quotes that expire, orders on a quote by client order
id (idempotent: a repeat returns the first fill or refusal), queries by client order
id, positions of unsettled trades and settlement instructions.

Run: python -m infra.simulators.liquidity --port 18310 --db <dir>/liquidity.sqlite3

Sides are the platform's: `buy` means the platform buys the asset from the provider.
The provider rounds its notional in its own favour (sagas/trade/pricing.py).
POST /admin/faults injects latency, rejects, 503s, timeouts, "executed but the
response was lost" (502 after the fill is committed) and fills other than quoted
(`fill_skew_bps`: the fill's price and notional that many basis points off its quote).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from infra.simulators.common import (
    Database,
    Faults,
    FaultSwitches,
    Refused,
    answer,
    install_handlers,
)
from sagas.banking import make_iban
from sagas.confirmations import ConfirmedLeg, sign_confirmation
from sagas.intents import key_id, raw_public_key
from sagas.trade.pricing import lp_notional, quantity_for_proceeds

SCHEMA = """
create table if not exists counterparties (
    name text primary key, spread_bps integer not null, quote_ttl_seconds integer not null,
    iban text not null, bic text not null, addresses text not null);
create table if not exists quotes (
    id text primary key, counterparty text not null, pair text not null, side text not null,
    price integer not null, quantity text not null, notional integer not null,
    expires_at text not null);
create table if not exists settlements (
    counterparty text not null, settlement_id text not null, request text not null,
    status text not null, legs text not null, primary key (counterparty, settlement_id));
create table if not exists orders (
    counterparty text not null, client_order_id text not null, quote_id text not null,
    status text not null, code text, trade_id text, pair text, side text, price integer,
    quantity text, notional integer, executed_at text, settlement_id text,
    repeats integer not null default 0,
    primary key (counterparty, client_order_id));
create table if not exists signing_keys (
    counterparty text primary key, private_key text not null);
"""

# Mid prices in cents per whole unit; the feed wanders +-0.1 % around them.
MIDS = {"BTC-EUR": 6_000_000, "ETH-EUR": 300_000}
DECIMALS = {"BTC": 8, "ETH": 18}
DEFAULT_COUNTERPARTIES = {"lp-alpha": 20, "lp-beta": 25, "lp-gamma": 30}  # spread bps


class CounterpartyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spread_bps: int = Field(default=20, ge=0, le=1000)
    quote_ttl_seconds: int = Field(default=10, ge=1, le=3600)
    addresses: dict[str, str] = Field(default_factory=dict, description="asset -> address")


class QuoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pair: str = Field(pattern=r"^[A-Z0-9]{2,12}-[A-Z]{3}$")
    side: Literal["buy", "sell"]
    quantity: StrictInt | None = Field(default=None, gt=0, description="base minor units")
    notional: StrictInt | None = Field(default=None, gt=0, description="quote minor units")

    @model_validator(mode="after")
    def _one(self) -> QuoteBody:
        if (self.quantity is None) == (self.notional is None):
            raise ValueError("give exactly one of quantity and notional")
        return self


class LegBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    asset: str = Field(pattern=r"^[A-Z][A-Z0-9]{1,11}$")
    amount: StrictInt = Field(gt=0)
    payer: Literal["provider", "platform"]
    to: str = Field(min_length=1, max_length=100, description="address or IBAN")


class SettlementBody(BaseModel):
    """The platform's net instructions for a set of fills, and where it takes its legs."""

    model_config = ConfigDict(extra="forbid")

    settlement_id: str = Field(min_length=1, max_length=128)
    end_to_end_id: str = Field(min_length=1, max_length=35)
    orders: list[str] = Field(min_length=1, max_length=10_000)
    legs: list[LegBody] = Field(max_length=20)


class OrderBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quote_id: str = Field(min_length=1, max_length=64)
    client_order_id: str = Field(min_length=1, max_length=128)


def _now() -> datetime:
    return datetime.now(UTC)


class Chains:
    """How the provider delivers: ETH from an unlocked dev-chain account, BTC from the
    test network's miner key, EUR by a payment at the bank. Test networks only."""

    def __init__(self, eth_rpc: str, eth_account: int, btc: Any, bank_url: str) -> None:
        from web3 import Web3

        self._w3 = Web3(Web3.HTTPProvider(eth_rpc))
        self.eth_address = self._w3.eth.accounts[eth_account]
        self._btc = btc
        self._bank = bank_url
        self._lock = threading.Lock()  # one transaction at a time per chain key

    def send(self, asset: str, to: str, amount: int, iban: str, e2e: str) -> str:
        import httpx
        from web3 import Web3

        with self._lock:
            if asset == "ETH":
                tx = self._w3.eth.send_transaction(
                    {"from": self.eth_address, "to": Web3.to_checksum_address(to), "value": amount}  # type: ignore[typeddict-item]
                )
                return "0x" + bytes(tx).hex()
            if asset == "BTC":
                for attempt in range(10):  # the faucet key is shared with tests: retry a race
                    try:
                        return str(self._btc.fund(to, amount))
                    except Exception:
                        if attempt == 9:
                            raise
                        time.sleep(1)
            reply = httpx.post(
                f"{self._bank}/v1/payments",
                json={
                    "debtor_iban": iban,
                    "creditor_iban": to,
                    "amount": amount,
                    "currency": asset,
                    "end_to_end_id": e2e,
                    "remittance_info": f"settlement {e2e}",
                },
                headers={"Idempotency-Key": f"lp-settle-{e2e}-{asset}"},
                timeout=10,
            )
            if reply.status_code != 200:
                raise RuntimeError(f"bank refused: {reply.text[:200]}")
            return str(reply.json()["payment_id"])


def mid(pair: str, now: float | None = None) -> int:
    if pair not in MIDS:
        raise Refused(422, "UNKNOWN_PAIR", f"no market in {pair}")
    step = int((now or time.time()) // 5) % 21 - 10  # -10..10, moves every 5 s
    return MIDS[pair] + MIDS[pair] * step // 10_000


class Provider:
    def __init__(self, path: Path, chains: Chains | None = None) -> None:
        self.db = Database(path, SCHEMA)
        self.faults = Faults()
        self.chains = chains
        with self.db.tx() as conn:
            columns = {row[1] for row in conn.execute("pragma table_info(orders)")}
            if "repeats" not in columns:  # a database from before the column
                conn.execute("alter table orders add column repeats integer not null default 0")
            columns = {row[1] for row in conn.execute("pragma table_info(settlements)")}
            if "confirmation" not in columns:
                conn.execute("alter table settlements add column confirmation text")
            for i, (name, spread) in enumerate(DEFAULT_COUNTERPARTIES.items()):
                conn.execute(
                    "insert into counterparties values (?, ?, 10, ?, 'SIMULPXXXXX', '{}') "
                    "on conflict do nothing",
                    (name, spread, make_iban("DE", f"50010517990000000{i + 1}")),
                )

    def counterparty(self, conn: Any, name: str) -> dict[str, Any]:
        row = conn.execute(
            "select spread_bps, quote_ttl_seconds, iban, bic, addresses from counterparties "
            "where name = ?",
            (name,),
        ).fetchone()
        if row is None:
            raise Refused(404, "UNKNOWN_COUNTERPARTY", f"no counterparty {name}")
        return {
            "name": name,
            "spread_bps": row[0],
            "quote_ttl_seconds": row[1],
            "iban": row[2],
            "bic": row[3],
            "addresses": json.loads(row[4]),
        }

    def signing_key(self, conn: Any, cp: str) -> Ed25519PrivateKey:
        """The counterparty's own confirmation key: made on first use, kept here (the
        provider's side; the platform only ever sees the public key)."""
        row = conn.execute(
            "select private_key from signing_keys where counterparty = ?", (cp,)
        ).fetchone()
        if row is not None:
            return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(row[0]))
        key = Ed25519PrivateKey.generate()
        raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        conn.execute(
            "insert into signing_keys values (?, ?) on conflict do nothing", (cp, raw.hex())
        )
        return self.signing_key(conn, cp)

    def confirm(self, conn: Any, cp: str, body: SettlementBody) -> dict[str, Any]:
        """The provider's signed confirmation of the legs it agreed to."""
        legs = [
            ConfirmedLeg(asset=leg.asset, amount=leg.amount, payer=leg.payer, to=leg.to)
            for leg in body.legs
        ]
        signed = sign_confirmation(
            self.signing_key(conn, cp),
            cp,
            body.settlement_id,
            body.end_to_end_id,
            legs,
            body.orders,
            _now(),
        )
        return signed.model_dump(mode="json")

    def net(self, conn: Any, cp: str, orders: list[str]) -> dict[tuple[str, str], int]:
        """The provider's own net of these fills: (asset, payer) -> amount."""
        totals: dict[str, int] = {}
        for client_order_id in orders:
            row = conn.execute(
                "select pair, side, quantity, notional from orders where counterparty = ? and "
                "client_order_id = ? and status = 'filled' and settlement_id is null",
                (cp, client_order_id),
            ).fetchone()
            if row is None:
                raise Refused(409, "MISMATCH", f"{client_order_id} is not an unsettled fill")
            base, fiat = row[0].split("-")
            sign = 1 if row[1] == "buy" else -1  # the platform bought: the provider delivers
            totals[base] = totals.get(base, 0) + sign * int(row[2])
            totals[fiat] = totals.get(fiat, 0) - sign * int(row[3])
        return {
            (asset, "provider" if amount > 0 else "platform"): abs(amount)
            for asset, amount in totals.items()
            if amount
        }

    def deliver(self, cp: str, settlement_id: str, e2e: str) -> None:
        """Deliver the provider's legs: crypto on chain, fiat by a bank payment."""
        with self.db.tx() as conn:
            legs = json.loads(
                conn.execute(
                    "select legs from settlements where counterparty = ? and settlement_id = ?",
                    (cp, settlement_id),
                ).fetchone()[0]
            )
            iban = self.counterparty(conn, cp)["iban"]
        for leg in legs:
            if leg["payer"] != "provider" or leg["status"] == "delivered":
                continue
            try:
                if self.chains is None:
                    raise RuntimeError("no chains or bank configured")
                leg["reference"] = self.chains.send(
                    leg["asset"], leg["to"], leg["amount"], iban, e2e
                )
                leg["status"] = "delivered"
            except Exception as exc:
                leg["status"] = f"failed: {exc}"[:200]
            with self.db.tx() as conn:
                conn.execute(
                    "update settlements set legs = ? where counterparty = ? and settlement_id = ?",
                    (json.dumps(legs), cp, settlement_id),
                )

    def order_view(self, row: Any) -> dict[str, Any]:
        keys = (
            "counterparty",
            "client_order_id",
            "quote_id",
            "status",
            "code",
            "trade_id",
            "pair",
            "side",
            "price",
            "quantity",
            "notional",
            "executed_at",
            "settlement_id",
            "repeats",
        )
        view = dict(zip(keys, row, strict=True))
        if view["quantity"] is not None:
            view["quantity"] = int(view["quantity"])
        return view

    def order(self, conn: Any, cp: str, client_order_id: str) -> dict[str, Any] | None:
        row = conn.execute(
            "select * from orders where counterparty = ? and client_order_id = ?",
            (cp, client_order_id),
        ).fetchone()
        return None if row is None else self.order_view(row)


def build(path: Path, chains: Chains | None = None) -> FastAPI:
    lp = Provider(path, chains)
    app = FastAPI(title="liquidity-provider simulator", version="1")
    install_handlers(app)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/admin/faults")
    def set_faults(switches: FaultSwitches) -> FaultSwitches:
        lp.faults.set(switches)
        return switches

    @app.put("/admin/counterparties/{name}")
    def configure(name: str, body: CounterpartyBody) -> dict[str, Any]:
        """Create a counterparty or change the fields given (the others stay)."""
        with lp.db.tx() as conn:
            existing = conn.execute(
                "select iban from counterparties where name = ?", (name,)
            ).fetchone()
            if existing is not None:
                current = lp.counterparty(conn, name)
                body = CounterpartyBody.model_validate(
                    {
                        "spread_bps": current["spread_bps"],
                        "quote_ttl_seconds": current["quote_ttl_seconds"],
                        "addresses": current["addresses"],
                        **body.model_dump(exclude_unset=True),
                    }
                )
            iban = (
                existing[0]
                if existing
                else make_iban("DE", f"5001051799{uuid.uuid4().int % 10**8:08d}")
            )
            conn.execute(
                "insert into counterparties values (?, ?, ?, ?, 'SIMULPXXXXX', ?) on conflict "
                "(name) do update set spread_bps = excluded.spread_bps, quote_ttl_seconds = "
                "excluded.quote_ttl_seconds, addresses = excluded.addresses",
                (name, body.spread_bps, body.quote_ttl_seconds, iban, json.dumps(body.addresses)),
            )
            return lp.counterparty(conn, name)

    @app.get("/v1/lp/{cp}/prices/{pair}")
    def prices(cp: str, pair: str) -> dict[str, Any]:
        with lp.db.tx() as conn:
            spread = lp.counterparty(conn, cp)["spread_bps"]
        m = mid(pair)
        half = -(-m * spread // 10_000)  # half the spread, rounded up
        return {
            "pair": pair,
            "bid": m - half,
            "ask": m + half,
            "at": _now().isoformat(),
        }

    @app.get("/v1/lp/{cp}/keys")
    def keys(cp: str) -> dict[str, Any]:
        """The public key this counterparty signs its settlement confirmations with."""
        with lp.db.tx() as conn:
            lp.counterparty(conn, cp)
            public = raw_public_key(lp.signing_key(conn, cp))
        return {"counterparty": cp, "public_key": public.hex(), "key_id": key_id(public)}

    @app.get("/v1/lp/{cp}/settlement-instructions")
    def instructions(cp: str) -> dict[str, Any]:
        with lp.db.tx() as conn:
            c = lp.counterparty(conn, cp)
        return {"counterparty": cp, "iban": c["iban"], "bic": c["bic"], "addresses": c["addresses"]}

    @app.post("/v1/lp/{cp}/quotes")
    def quote(cp: str, body: QuoteBody) -> JSONResponse:
        lp.faults.before("quote")
        base = body.pair.split("-")[0]
        decimals = DECIMALS.get(base)
        if decimals is None:
            raise Refused(422, "UNKNOWN_PAIR", f"no market in {body.pair}")
        with lp.db.tx() as conn:
            c = lp.counterparty(conn, cp)
            m = mid(body.pair)
            half = -(-m * c["spread_bps"] // 10_000)
            price = m + half if body.side == "buy" else m - half
            if body.quantity is not None:
                quantity = body.quantity
            elif body.side == "buy":
                assert body.notional is not None
                quantity = body.notional * 10**decimals // price
            else:
                assert body.notional is not None
                quantity = quantity_for_proceeds(body.notional, price, decimals)
            if quantity <= 0:
                raise Refused(422, "AMOUNT_TOO_SMALL", "the amount buys nothing")
            notional = lp_notional(body.side, quantity, price, decimals)
            quote_id = f"q-{uuid.uuid4().hex[:16]}"
            expires = _now() + timedelta(seconds=c["quote_ttl_seconds"])
            conn.execute(
                "insert into quotes values (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    quote_id,
                    cp,
                    body.pair,
                    body.side,
                    price,
                    str(quantity),
                    notional,
                    expires.isoformat(),
                ),
            )
        return answer(
            201,
            {
                "quote_id": quote_id,
                "counterparty": cp,
                "pair": body.pair,
                "side": body.side,
                "price": price,
                "quantity": quantity,
                "notional": notional,
                "expires_at": expires.isoformat(),
            },
        )

    @app.post("/v1/lp/{cp}/orders")
    def execute(cp: str, body: OrderBody) -> JSONResponse:
        with lp.db.tx() as conn:
            lp.counterparty(conn, cp)
            first = lp.order(conn, cp, body.client_order_id)
            if first is not None:
                # Counted so tests can tell a platform that asks before it re-sends from
                # one that relies on this provider's idempotency.
                conn.execute(
                    "update orders set repeats = repeats + 1 where counterparty = ? and "
                    "client_order_id = ?",
                    (cp, body.client_order_id),
                )
        if first is not None:  # a repeat: the first answer, whatever it was
            if first["quote_id"] != body.quote_id:
                raise Refused(
                    409, "CLIENT_ORDER_ID_REUSED", f"{body.client_order_id} is another order"
                )
            return answer(200 if first["status"] == "filled" else 422, first)
        try:
            lp.faults.before("execute")
        except Refused as exc:
            if exc.code != "REJECTED":
                raise
            return answer(422, record(cp, body, "rejected", "REJECTED"))
        with lp.db.tx() as conn:
            row = conn.execute(
                "select pair, side, price, quantity, notional, expires_at, counterparty "
                "from quotes where id = ?",
                (body.quote_id,),
            ).fetchone()
        if row is None or row[6] != cp:
            raise Refused(404, "UNKNOWN_QUOTE", f"no quote {body.quote_id}")
        if row[5] <= _now().isoformat():
            return answer(422, record(cp, body, "rejected", "QUOTE_EXPIRED"))
        skew = lp.faults.switches.fill_skew_bps if lp.faults.applies("execute") else 0
        if skew:  # a provider that fills other than it quoted (the platform must notice)
            price, notional = int(row[2]), int(row[4])
            if not lp.faults.switches.fill_skew_price_only:
                notional += notional * skew // 10_000
            skewed = (price + price * skew // 10_000, row[3], notional)
            row = (row[0], row[1], *skewed, row[5], row[6])
        filled = record(cp, body, "filled", None, row)
        lp.faults.after("execute")
        return answer(200 if filled["status"] == "filled" else 422, filled)

    def record(
        cp: str, body: OrderBody, status: str, code: str | None, quote: Any = None
    ) -> dict[str, Any]:
        with lp.db.tx() as conn:
            existing = lp.order(conn, cp, body.client_order_id)
            if existing is not None:  # a concurrent repeat won
                return existing
            filled = quote is not None and status == "filled"
            conn.execute(
                "insert into orders values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, null, 0)",
                (
                    cp,
                    body.client_order_id,
                    body.quote_id,
                    status,
                    code,
                    f"t-{uuid.uuid4().hex[:16]}" if filled else None,
                    quote[0] if filled else None,
                    quote[1] if filled else None,
                    quote[2] if filled else None,
                    quote[3] if filled else None,
                    quote[4] if filled else None,
                    _now().isoformat() if filled else None,
                ),
            )
            found = lp.order(conn, cp, body.client_order_id)
            assert found is not None
            return found

    @app.get("/v1/lp/{cp}/orders/{client_order_id}")
    def get_order(cp: str, client_order_id: str) -> JSONResponse:
        lp.faults.before("query")
        with lp.db.tx() as conn:
            lp.counterparty(conn, cp)
            found = lp.order(conn, cp, client_order_id)
        if found is None:
            raise Refused(404, "UNKNOWN_ORDER", f"no order {client_order_id}")
        return answer(200, found)

    @app.get("/v1/lp/{cp}/positions")
    def positions(cp: str) -> dict[str, Any]:
        """Unsettled fills, net per asset from the platform's side: quantity the provider
        owes the platform (positive) and fiat the platform owes the provider (positive)."""
        with lp.db.tx() as conn:
            lp.counterparty(conn, cp)
            rows = conn.execute(
                "select pair, side, quantity, notional from orders where counterparty = ? and "
                "status = 'filled' and settlement_id is null",
                (cp,),
            ).fetchall()
        out: dict[str, dict[str, int]] = {}
        for pair, side, quantity, notional in rows:
            base, quote_ccy = pair.split("-")
            sign = 1 if side == "buy" else -1
            out.setdefault(base, {"quantity": 0, "trades": 0})
            out.setdefault(quote_ccy, {"quantity": 0, "trades": 0})
            out[base]["quantity"] += sign * int(quantity)
            out[base]["trades"] += 1
            out[quote_ccy]["quantity"] += sign * int(notional)
            out[quote_ccy]["trades"] += 1
        return {"counterparty": cp, "positions": out}

    @app.post("/v1/lp/{cp}/settlements")
    def settle(cp: str, body: SettlementBody) -> JSONResponse:
        """Take a settlement: the fills must be this counterparty's unsettled fills and
        the legs its own net of them (the provider reconciles too), else 409 MISMATCH.
        Idempotent by settlement id. Its own legs are then delivered in the background
        (a `reject_next` on operation `deliver` withholds them: a missing leg)."""
        lp.faults.before("settle")
        request = body.model_dump_json()
        with lp.db.tx() as conn:
            lp.counterparty(conn, cp)
            row = conn.execute(
                "select request, status, legs, confirmation from settlements where "
                "counterparty = ? and settlement_id = ?",
                (cp, body.settlement_id),
            ).fetchone()
            if row is not None:
                if row[0] != request:
                    raise Refused(409, "SETTLEMENT_ID_REUSED", body.settlement_id)
                return answer(
                    200,
                    {
                        "status": row[1],
                        "legs": json.loads(row[2]),
                        "confirmation": json.loads(row[3] or "null"),
                    },
                )
            expected = lp.net(conn, cp, body.orders)
            given = {(leg.asset, leg.payer): leg.amount for leg in body.legs}
            if len(given) != len(body.legs) or len(set(body.orders)) != len(body.orders):
                raise Refused(409, "MISMATCH", "a leg or an order is given twice")
            if expected != given:
                raise Refused(409, "MISMATCH", f"the fills net to {sorted(expected.items())}")
            # What it signs it is paid: the platform's legs only to its own settlement
            # instructions (its address for the asset, its IBAN), never where the platform
            # says.
            own = lp.counterparty(conn, cp)
            for leg in body.legs:
                if leg.payer == "platform" and leg.to not in (
                    own["addresses"].get(leg.asset),
                    own["iban"],
                ):
                    raise Refused(409, "MISMATCH", f"{leg.asset} is not paid to {leg.to}")
            marks = ",".join("?" * len(body.orders))
            conn.execute(
                f"update orders set settlement_id = ? where counterparty = ? and "  # noqa: S608
                f"client_order_id in ({marks})",
                (body.settlement_id, cp, *body.orders),
            )
            legs = [
                {**leg.model_dump(), "status": "pending", "reference": None} for leg in body.legs
            ]
            confirmation = lp.confirm(conn, cp, body)
            conn.execute(
                "insert into settlements (counterparty, settlement_id, request, status, legs, "
                "confirmation) values (?, ?, ?, 'accepted', ?, ?)",
                (cp, body.settlement_id, request, json.dumps(legs), json.dumps(confirmation)),
            )
        withhold = False
        try:
            lp.faults.before("deliver")
        except Refused:
            withhold = True
        if not withhold:
            threading.Thread(
                target=lp.deliver, args=(cp, body.settlement_id, body.end_to_end_id), daemon=True
            ).start()
        return answer(201, {"status": "accepted", "legs": legs, "confirmation": confirmation})

    @app.get("/v1/lp/{cp}/settlements/{settlement_id}")
    def settlement(cp: str, settlement_id: str) -> dict[str, Any]:
        with lp.db.tx() as conn:
            row = conn.execute(
                "select status, legs, confirmation from settlements where counterparty = ? "
                "and settlement_id = ?",
                (cp, settlement_id),
            ).fetchone()
        if row is None:
            raise Refused(404, "UNKNOWN_SETTLEMENT", settlement_id)
        return {
            "status": row[0],
            "legs": json.loads(row[1]),
            "confirmation": json.loads(row[2] or "null"),
        }

    @app.post("/v1/lp/{cp}/settlements/{settlement_id}/cancel")
    def cancel(cp: str, settlement_id: str) -> dict[str, Any]:
        """The platform gave up waiting: the fills are unsettled again (legs not yet
        delivered are not delivered)."""
        with lp.db.tx() as conn:
            conn.execute(
                "update orders set settlement_id = null where counterparty = ? and "
                "settlement_id = ?",
                (cp, settlement_id),
            )
            conn.execute(
                "update settlements set status = 'cancelled' where counterparty = ? and "
                "settlement_id = ?",
                (cp, settlement_id),
            )
        return settlement(cp, settlement_id)

    return app


def main() -> None:
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description="the liquidity-provider simulator")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--eth-rpc", help="dev chain to deliver ETH on")
    parser.add_argument("--eth-account", type=int, default=9, help="unlocked dev account")
    parser.add_argument("--btc-rpc")
    parser.add_argument("--btc-credentials", type=Path, help="btcd RPC credentials (JSON)")
    parser.add_argument("--btc-faucet", type=Path, help="the test network's miner key (JSON)")
    parser.add_argument("--btc-network", default="simnet")
    parser.add_argument("--bank-url")
    args = parser.parse_args()
    args.db.parent.mkdir(parents=True, exist_ok=True)
    chains = None
    if args.eth_rpc and args.btc_rpc and args.bank_url:
        from adapters.chains.bitcoin.faucet import BtcFaucet
        from adapters.chains.bitcoin.node import BtcdNode

        creds = json.loads(args.btc_credentials.read_text())
        node = BtcdNode(args.btc_rpc, (creds["user"], creds["password"]), args.btc_network)
        key = json.loads(args.btc_faucet.read_text())
        faucet = BtcFaucet(node, args.btc_network, key["wif"], key["address"])
        chains = Chains(args.eth_rpc, args.eth_account, faucet, args.bank_url)
    uvicorn.run(build(args.db, chains), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
