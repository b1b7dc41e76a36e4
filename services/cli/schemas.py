"""Write the JSON Schemas of the published event models into docs/events/."""

from __future__ import annotations

import json
from pathlib import Path

from sagas.events import Envelope

DOCS_EVENTS = Path(__file__).resolve().parents[2] / "docs" / "events"


def main() -> None:
    DOCS_EVENTS.mkdir(parents=True, exist_ok=True)
    path = DOCS_EVENTS / "envelope.schema.json"
    path.write_text(json.dumps(Envelope.model_json_schema(), indent=2, sort_keys=True) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
