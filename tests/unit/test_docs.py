"""The docs stay true: every error code is documented, the event schemas are current."""

from __future__ import annotations

from pathlib import Path

from sagas.errors import CATALOGUE
from services.cli.schemas import PAYLOADS, render, schemas

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_error_code_is_documented_with_its_title() -> None:
    text = (DOCS / "errors.md").read_text()
    for cls in CATALOGUE:
        assert f"| {cls.code} | {cls.title} | {'yes' if cls.transient else 'no'} |" in text


def test_event_schemas_in_docs_match_the_models() -> None:
    for name, schema in schemas().items():
        path = DOCS / "events" / name
        assert path.exists() and path.read_text() == render(schema), (
            f"{path} is stale: run python -m services.cli.schemas"
        )


def test_every_published_event_type_is_in_the_catalogue() -> None:
    catalogue = (DOCS / "events" / "README.md").read_text()
    for event_type in PAYLOADS:
        assert f"`{event_type}`" in catalogue
