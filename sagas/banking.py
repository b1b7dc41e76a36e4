"""Fiat at the bank, as the core-banking port speaks it: holds, captures, payments and
statements, with ISO 20022-aligned fields (end-to-end id, debtor and creditor IBAN and
BIC, unstructured remittance information). Amounts are integers in the currency's
minor unit (cents)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")
_BIC = re.compile(r"[A-Z]{6}[A-Z0-9]{2}([A-Z0-9]{3})?")

HoldStatus = Literal["active", "captured", "released", "expired"]


def iban_valid(iban: str) -> bool:
    """ISO 13616: shape and the mod-97 check digits."""
    if not _IBAN.fullmatch(iban) or not 2 <= int(iban[2:4]) <= 98:
        return False
    rearranged = iban[4:] + iban[:4]
    digits = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(digits) % 97 == 1


def make_iban(country: str, bban: str) -> str:
    """An IBAN with correct check digits for a country and a basic account number."""
    digits = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    check = 98 - int(digits) % 97
    return f"{country}{check:02d}{bban}"


def bic_valid(bic: str) -> bool:
    return bool(_BIC.fullmatch(bic))


class BankHold(BaseModel):
    model_config = ConfigDict(frozen=True)

    hold_id: str
    iban: str
    amount: StrictInt
    currency: str
    status: HoldStatus
    captured: StrictInt = 0
    expires_at: datetime
    end_to_end_id: str


class BankPayment(BaseModel):
    """A booked credit transfer (pacs.008-like): who paid whom, how much, for what."""

    model_config = ConfigDict(frozen=True)

    payment_id: str
    end_to_end_id: str
    debtor_iban: str
    creditor_iban: str
    amount: StrictInt
    currency: str
    remittance_info: str = ""
    released: StrictInt = Field(default=0, description="capture: what the hold gave back")


class BankBalance(BaseModel):
    model_config = ConfigDict(frozen=True)

    iban: str
    currency: str
    booked: StrictInt
    held: StrictInt
    available: StrictInt


class StatementEntry(BaseModel):
    """One booked entry (camt.053-like); CRDT adds to the account, DBIT takes from it."""

    model_config = ConfigDict(frozen=True)

    entry_id: int
    booked_at: datetime
    amount: StrictInt
    currency: str
    indicator: Literal["CRDT", "DBIT"]
    end_to_end_id: str
    counterparty_iban: str | None = None
    remittance_info: str = ""
