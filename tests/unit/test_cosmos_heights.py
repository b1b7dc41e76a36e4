"""CosmosNode's reads at one height: every answer says the height it is from (the header
the SDK's query router sets), a pinned read must come back from that height, and a
missing delegation is None at the height asked. Over a stub of the gRPC method."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from adapters.chains.cosmos.node import HEIGHT_HEADER, CosmosNode, QueryRefused
from sagas.errors import DependencyUnavailable


class _Call:
    def __init__(self, meta: tuple[tuple[str, str], ...]) -> None:
        self._meta = meta

    def initial_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._meta


class _Refused(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, meta: tuple[tuple[str, str], ...] = ()) -> None:
        self._code, self._meta = code, meta

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "refused"

    def initial_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._meta


class _Method:
    """Answers at `at` (the header it sends back), or raises `error`; records the
    metadata it was called with."""

    def __init__(self, at: str | None, error: grpc.RpcError | None = None) -> None:
        self.at, self.error = at, error
        self.asked: Any = None

    def with_call(self, request: Any, timeout: float, metadata: Any) -> tuple[Any, _Call]:
        self.asked = metadata
        if self.error is not None:
            raise self.error
        return "reply", _Call(() if self.at is None else ((HEIGHT_HEADER, self.at),))


NODE = CosmosNode("grpc+http://127.0.0.1:1")  # connects lazily: never used here


def test_a_read_says_its_height_and_a_pinned_read_asks_for_it() -> None:
    latest = _Method("120")
    assert NODE._query_at(latest, None, None) == ("reply", 120)
    assert latest.asked is None
    pinned = _Method("99")
    assert NODE._query_at(pinned, None, 99) == ("reply", 99)
    assert pinned.asked == ((HEIGHT_HEADER, "99"),)


@pytest.mark.parametrize("said", [None, "x", "100"], ids=["no header", "garbage", "another"])
def test_an_answer_from_no_or_another_height_is_refused(said: str | None) -> None:
    with pytest.raises(QueryRefused):
        NODE._query_at(_Method(said), None, 99)
    if said != "100":
        with pytest.raises(QueryRefused):
            NODE._query_at(_Method(said), None, None)


def test_not_found_is_none_at_the_height_and_other_refusals_are_not() -> None:
    at = ((HEIGHT_HEADER, "7"),)
    assert NODE._query_at(_Method(None, _Refused(grpc.StatusCode.NOT_FOUND, at)), None, None) == (
        None,
        7,
    )
    gone = _Method(None, _Refused(grpc.StatusCode.NOT_FOUND))
    assert NODE._query_at(gone, None, 7) == (None, 7)
    with pytest.raises(QueryRefused):  # not found, from an unknown height: not trusted
        NODE._query_at(gone, None, None)
    with pytest.raises(QueryRefused):
        NODE._query_at(_Method(None, _Refused(grpc.StatusCode.INVALID_ARGUMENT, at)), None, 7)
    with pytest.raises(DependencyUnavailable):
        NODE._query_at(_Method(None, _Refused(grpc.StatusCode.UNAVAILABLE)), None, None)
