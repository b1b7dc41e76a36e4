"""Write the JSON Schemas of the envelope and of every published payload into docs/events/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sagas.chainwatch import PAYLOADS as CHAIN_PAYLOADS
from sagas.commands import PAYLOADS as COMMAND_PAYLOADS
from sagas.deposit.events import PAYLOADS as DEPOSIT_PAYLOADS
from sagas.events import Envelope
from sagas.governance_events import PAYLOADS as GOVERNANCE_PAYLOADS
from sagas.ledger.events import PAYLOADS as LEDGER_PAYLOADS
from sagas.settlement.events import PAYLOADS as SETTLEMENT_PAYLOADS
from sagas.staking.events import PAYLOADS as STAKING_PAYLOADS
from sagas.trade.events import PAYLOADS as TRADE_PAYLOADS
from sagas.withdrawal.events import PAYLOADS as WITHDRAWAL_PAYLOADS

PAYLOADS = {
    **LEDGER_PAYLOADS,
    **CHAIN_PAYLOADS,
    **WITHDRAWAL_PAYLOADS,
    **DEPOSIT_PAYLOADS,
    **COMMAND_PAYLOADS,
    **TRADE_PAYLOADS,
    **SETTLEMENT_PAYLOADS,
    **GOVERNANCE_PAYLOADS,
    **STAKING_PAYLOADS,
}

DOCS_EVENTS = Path(__file__).resolve().parents[2] / "docs" / "events"


def schemas() -> dict[str, dict[str, Any]]:
    """File name -> schema, for everything a bank's integration may parse."""
    out = {"envelope.schema.json": Envelope.model_json_schema()}
    for event_type, model in PAYLOADS.items():
        out[f"{event_type}.schema.json"] = model.model_json_schema()
    return out


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    DOCS_EVENTS.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas().items():
        (DOCS_EVENTS / name).write_text(render(schema))
        print(f"wrote docs/events/{name}")


if __name__ == "__main__":
    main()
