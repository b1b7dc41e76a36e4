"""The core-banking port over the bank's HTTP API (infra/simulators/bank.py speaks it)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from adapters.http_client import JsonHttp
from sagas.banking import BankBalance, BankHold, BankPayment, StatementEntry, iban_valid
from sagas.errors import (
    BankAccountUnknown,
    BankInsufficientFunds,
    BankRefused,
    CustodyError,
    DependencyUnavailable,
    HoldNotActive,
    IbanInvalid,
    IdempotencyConflict,
    NotFound,
    PaymentUnknown,
)
from sagas.payments import REMEMBERED_REFUSALS

# The bank's reason codes -> the platform's stable errors.
_REFUSALS: dict[str, type[CustodyError]] = {
    "AM04": BankInsufficientFunds,
    "AC01": BankAccountUnknown,
    "HOLD_EXPIRED": HoldNotActive,
    "HOLD_NOT_ACTIVE": HoldNotActive,
    "AMOUNT_EXCEEDS_HOLD": HoldNotActive,
    "HOLD_NOT_FOUND": NotFound,
    "IDEMPOTENCY_CONFLICT": IdempotencyConflict,
    "PAYMENT_UNKNOWN": PaymentUnknown,
}


def refusal(status: int, body: dict[str, Any]) -> CustodyError:
    """A 4xx with the bank's reason code is a refusal; a 5xx or an answer without a code
    leaves the outcome unknown: transient, retried with the same key."""
    code = body.get("code")
    detail = f"{code}: {body.get('detail', '')}"
    if status >= 500 or not code:
        return DependencyUnavailable(f"bank answered {status}: {str(detail)[:200]}")
    return _REFUSALS.get(str(code), BankRefused)(detail)


class HttpCoreBanking:
    def __init__(
        self,
        base_url: str,
        platform_iban: str,
        timeout: float = 5.0,
        attempts: int = 3,
    ) -> None:
        self._http = JsonHttp(base_url, "bank", timeout=timeout, attempts=attempts)
        self.platform_iban = platform_iban

    def __repr__(self) -> str:
        return "HttpCoreBanking()"

    def _post(self, path: str, body: dict[str, Any], key: str) -> dict[str, Any]:
        status, answer = self._http.call("POST", path, body, key=key)
        if status >= 400:
            raise refusal(status, answer)
        return answer

    def _get(self, path: str) -> dict[str, Any]:
        status, answer = self._http.call("GET", path)
        if status >= 400:
            raise refusal(status, answer)
        return answer

    @staticmethod
    def _check(*ibans: str) -> None:
        for iban in ibans:
            if not iban_valid(iban):
                raise IbanInvalid(iban)

    def hold(
        self,
        key: str,
        iban: str,
        amount: int,
        currency: str,
        ttl_seconds: int,
        end_to_end_id: str,
        remittance_info: str = "",
    ) -> BankHold:
        self._check(iban)
        return BankHold.model_validate(
            self._post(
                "/v1/holds",
                {
                    "iban": iban,
                    "amount": amount,
                    "currency": currency,
                    "expires_in_seconds": ttl_seconds,
                    "end_to_end_id": end_to_end_id,
                    "remittance_info": remittance_info,
                },
                key,
            )
        )

    def capture(
        self,
        key: str,
        hold_id: str,
        amount: int,
        creditor_iban: str,
        end_to_end_id: str,
        remittance_info: str = "",
    ) -> BankPayment:
        self._check(creditor_iban)
        return BankPayment.model_validate(
            self._post(
                f"/v1/holds/{hold_id}/capture",
                {
                    "amount": amount,
                    "creditor_iban": creditor_iban,
                    "end_to_end_id": end_to_end_id,
                    "remittance_info": remittance_info,
                },
                key,
            )
        )

    def release(self, key: str, hold_id: str) -> BankHold:
        return BankHold.model_validate(self._post(f"/v1/holds/{hold_id}/release", {}, key))

    def transfer(
        self,
        key: str,
        debtor_iban: str,
        creditor_iban: str,
        amount: int,
        currency: str,
        end_to_end_id: str,
        remittance_info: str = "",
    ) -> BankPayment:
        self._check(debtor_iban, creditor_iban)
        return BankPayment.model_validate(
            self._post(
                "/v1/payments",
                {
                    "debtor_iban": debtor_iban,
                    "creditor_iban": creditor_iban,
                    "amount": amount,
                    "currency": currency,
                    "end_to_end_id": end_to_end_id,
                    "remittance_info": remittance_info,
                },
                key,
            )
        )

    def credit(
        self,
        key: str,
        creditor_iban: str,
        amount: int,
        currency: str,
        end_to_end_id: str,
        remittance_info: str = "",
    ) -> BankPayment:
        return self.transfer(
            key, self.platform_iban, creditor_iban, amount, currency, end_to_end_id, remittance_info
        )

    def payment(self, key: str) -> BankPayment:
        """Only three answers are the bank's word about the key: the payment (ACSC), its
        remembered refusal (RJCT, raised as one of REMEMBERED_REFUSALS) and 404
        PAYMENT_UNKNOWN. Anything else (a 4xx of a gateway, 429, 401, a reject switch)
        says nothing about the key: transient, asked again, never a refusal."""
        try:
            answer = self._get(f"/v1/payments/by-key/{quote(key, safe='')}")
        except PaymentUnknown:
            raise
        except CustodyError as exc:
            if exc.transient:
                raise
            raise DependencyUnavailable(f"the bank's answer about {key}: {exc}") from exc
        if answer.get("status") == "RJCT":  # refused under this key, remembered for ever
            stated = refusal(422, {"code": answer.get("reason"), "detail": answer.get("detail")})
            if not isinstance(stated, REMEMBERED_REFUSALS):
                stated = BankRefused(stated.detail)
            raise stated
        if answer.get("status") != "ACSC":
            raise DependencyUnavailable(f"the bank's answer about {key}: {answer.get('status')}")
        return BankPayment.model_validate(answer)

    def get_hold(self, hold_id: str) -> BankHold:
        return BankHold.model_validate(self._get(f"/v1/holds/{hold_id}"))

    def balance(self, iban: str) -> BankBalance:
        self._check(iban)
        return BankBalance.model_validate(self._get(f"/v1/accounts/{iban}"))

    def statement(
        self, iban: str, after: int = 0, end_to_end_id: str | None = None
    ) -> list[StatementEntry]:
        self._check(iban)
        query = f"after={after}" + (f"&end_to_end_id={end_to_end_id}" if end_to_end_id else "")
        answer = self._get(f"/v1/accounts/{iban}/statement?{query}")
        return [StatementEntry.model_validate(e) for e in answer["entries"]]
