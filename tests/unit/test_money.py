from __future__ import annotations

import pytest

from sagas.money import format_units, parse_units


@pytest.mark.parametrize(
    ("amount", "decimals", "text"),
    [
        (0, 8, "0"),
        (1, 8, "0.00000001"),
        (123_456_789, 8, "1.23456789"),
        (10**18, 18, "1"),
        (25 * 10**16, 18, "0.25"),
        (1_234_500, 6, "1.2345"),
        (-150, 2, "-1.5"),
        (42, 0, "42"),
        (
            2**256 - 1,
            18,
            "115792089237316195423570985008687907853269984665640564039457.584007913129639935",
        ),
    ],
)
def test_format_and_parse_are_exact_inverses(amount: int, decimals: int, text: str) -> None:
    assert format_units(amount, decimals) == text
    if amount >= 0:
        assert parse_units(text, decimals) == amount


@pytest.mark.parametrize("text", ["1.123", "0.0001"])
def test_more_decimals_than_the_asset_has_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="decimals"):
        parse_units(text, 2)


@pytest.mark.parametrize(
    "text", ["", "-1", "1e5", "01", "1.", ".5", " 1", "1,5", "NaN", "1\n", "0.5\n", "1\n2"]
)
def test_anything_but_a_plain_decimal_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_units(text, 8)


@pytest.mark.parametrize("text", ["key\n", "k" * 64 + "\n"])
def test_an_idempotency_key_with_a_trailing_newline_is_refused(text: str) -> None:
    from sagas.errors import IdempotencyKeyMissing
    from services.app.withdrawals import operation_id

    with pytest.raises(IdempotencyKeyMissing):
        operation_id("c-1", text)


def test_an_iban_or_bic_with_a_trailing_newline_is_refused() -> None:
    from sagas.banking import bic_valid, iban_valid

    assert iban_valid("DE89370400440532013000") and not iban_valid("DE89370400440532013000\n")
    assert bic_valid("DEUTDEFF") and not bic_valid("DEUTDEFF\n")
