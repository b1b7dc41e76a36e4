"""The docs stay true: every error code is in docs/errors.md, the event schema is current."""

from __future__ import annotations

import json
from pathlib import Path

from sagas.errors import CATALOGUE
from sagas.events import Envelope

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_error_code_is_documented_with_its_title() -> None:
    text = (DOCS / "errors.md").read_text()
    for cls in CATALOGUE:
        assert f"| {cls.code} | {cls.title} | {'yes' if cls.transient else 'no'} |" in text


def test_envelope_schema_in_docs_matches_the_model() -> None:
    committed = json.loads((DOCS / "events" / "envelope.schema.json").read_text())
    assert committed == Envelope.model_json_schema(), "regenerate: python -m services.cli.schemas"
