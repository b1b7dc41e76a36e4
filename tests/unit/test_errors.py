from __future__ import annotations

import re

from sagas.errors import CATALOGUE, CustodyError, DependencyUnavailable, KeyAccessDenied


def test_codes_are_unique_and_well_formed() -> None:
    codes = [cls.code for cls in CATALOGUE]
    assert len(codes) == len(set(codes))
    assert all(re.fullmatch(r"CUS-\d{4}", c) for c in codes)


def test_every_error_class_is_catalogued() -> None:
    def subclasses(cls: type[CustodyError]) -> set[type[CustodyError]]:
        direct = set(cls.__subclasses__())
        return direct.union(*(subclasses(c) for c in direct))

    found = subclasses(CustodyError)
    assert set(CATALOGUE) <= found
    # An adapter may refine a catalogued error without a code of its own (the Bitcoin
    # sender's InsufficientCoins is a CannotPay): its code is its parent's.
    for cls in found - set(CATALOGUE):
        assert not cls.__module__.startswith("sagas"), f"{cls} is not in the catalogue"
        assert any(issubclass(cls, c) and cls.code == c.code for c in CATALOGUE), cls


def test_message_carries_code_title_and_detail() -> None:
    err = KeyAccessDenied("transit decrypt on custody-kek")
    assert str(err) == "CUS-4031 key access denied: transit decrypt on custody-kek"
    assert not err.transient
    assert DependencyUnavailable().transient
