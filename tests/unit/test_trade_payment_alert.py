"""The payment alert's activity takes the arguments a saga scheduled before the alert
carried its error code (three, the failure as text) and those it schedules now."""

from __future__ import annotations

import inspect
import typing

from temporalio.contrib.pydantic import pydantic_data_converter

from sagas.trade import PaymentFailure
from sagas.trade.activities import TradeActivities


def test_the_alert_takes_its_old_three_arguments_and_its_new_ones() -> None:
    # The worker decodes with the method's type hints only when the count of scheduled
    # arguments matches them: a saga scheduled (req, trade, text) before; it still must.
    params = list(inspect.signature(TradeActivities.alert_payment).parameters)[1:]
    assert params == ["req", "trade", "error"]
    hint = typing.get_type_hints(TradeActivities.alert_payment)["error"]
    converter = pydantic_data_converter.payload_converter
    text = "CUS-9001 dependency unavailable: the bank is down"
    (old,) = converter.from_payloads(converter.to_payloads([text]), [hint])
    assert old == text
    failure = PaymentFailure(detail="the bank is down", error_code="CUS-9001")
    (new,) = converter.from_payloads(converter.to_payloads([failure]), [hint])
    assert new == failure
