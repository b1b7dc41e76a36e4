"""Executed trades and clients' bank accounts on SQL (SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapters.ledger.migrate import upgrade
from adapters.sqldb import Conn, SqlDatabase
from sagas.errors import NotFound
from sagas.trade import TradeRecord

_COLUMNS = (
    "operation_id, client_id, side, asset, currency, counterparty, client_order_id, quote_id, "
    "trade_id, price, quantity, lp_notional, fee, client_fiat, executed_at, settlement_id"
)
_INTS = ("price", "quantity", "lp_notional", "fee", "client_fiat")


class _Race(Exception):
    pass


class SqlTradeStore:
    def __init__(self, url: str, migrate: bool = True) -> None:
        if migrate:
            upgrade(url)
        self._db = SqlDatabase(url, on_integrity=lambda exc: _Race(str(exc)))

    def __repr__(self) -> str:
        return f"SqlTradeStore({self._db.kind})"

    def record(self, trade: TradeRecord) -> TradeRecord:
        def work(conn: Conn) -> TradeRecord:
            row = conn.one(
                f"select {_COLUMNS} from trades where operation_id = ?", (trade.operation_id,)
            )
            if row is not None:
                return _trade(row)
            if conn.one("select 1 from operations where id = ?", (trade.operation_id,)) is None:
                raise NotFound(f"operation {trade.operation_id}")  # a trade is an operation's
            values = trade.model_dump()
            conn.run(
                f"insert into trades ({_COLUMNS}) values ({', '.join('?' * 16)})",
                tuple(
                    str(values[c])
                    if c in _INTS
                    else conn.time(values[c])
                    if c == "executed_at"
                    else values[c]
                    for c in _COLUMNS.split(", ")
                ),
            )
            return trade

        return self._db.write(work, retry_on=(_Race,))

    def get(self, operation_id: str) -> TradeRecord | None:
        with self._db.tx() as conn:
            row = conn.one(f"select {_COLUMNS} from trades where operation_id = ?", (operation_id,))
        return None if row is None else _trade(row)

    def unsettled(self, counterparty: str | None = None) -> list[TradeRecord]:
        sql = f"select {_COLUMNS} from trades where settlement_id is null"
        params: tuple[Any, ...] = ()
        if counterparty is not None:
            sql += " and counterparty = ?"
            params = (counterparty,)
        with self._db.tx() as conn:
            rows = conn.all(sql + " order by executed_at, operation_id", params)
        return [_trade(r) for r in rows]

    def assign(self, settlement_id: str, operation_ids: Sequence[str]) -> list[str]:
        def work(conn: Conn) -> list[str]:
            taken = []
            for op_id in operation_ids:
                row = conn.one(
                    "update trades set settlement_id = ? where operation_id = ? and "
                    "(settlement_id is null or settlement_id = ?) returning operation_id",
                    (settlement_id, op_id, settlement_id),
                )
                if row is not None:
                    taken.append(str(row[0]))
            return taken

        return self._db.write(work, retry_on=(_Race,))

    def for_settlement(self, settlement_id: str) -> list[TradeRecord]:
        with self._db.tx() as conn:
            rows = conn.all(
                f"select {_COLUMNS} from trades where settlement_id = ? "
                "order by executed_at, operation_id",
                (settlement_id,),
            )
        return [_trade(r) for r in rows]

    def release(self, settlement_id: str, counterparty: str) -> list[str]:
        def work(conn: Conn) -> list[str]:
            rows = conn.all(
                "update trades set settlement_id = null where settlement_id = ? and "
                "counterparty = ? returning operation_id",
                (settlement_id, counterparty),
            )
            return sorted(str(r[0]) for r in rows)

        return self._db.write(work, retry_on=(_Race,))

    def set_bank_account(self, client_id: str, iban: str, bic: str) -> None:
        def work(conn: Conn) -> None:
            row = conn.one(
                "update clients set iban = ?, bic = ? where id = ? returning id",
                (iban, bic, client_id),
            )
            if row is None:
                raise NotFound(f"client {client_id}")

        self._db.write(work)

    def bank_account(self, client_id: str) -> tuple[str, str] | None:
        with self._db.tx() as conn:
            row = conn.one("select iban, bic from clients where id = ?", (client_id,))
        if row is None or row[0] is None:
            return None
        return str(row[0]), str(row[1])


def _trade(row: Sequence[Any]) -> TradeRecord:
    names = _COLUMNS.split(", ")
    values: dict[str, Any] = dict(zip(names, row, strict=True))
    for name in _INTS:
        values[name] = int(values[name])
    values["executed_at"] = Conn.read_time(values["executed_at"])
    return TradeRecord.model_validate(values)
