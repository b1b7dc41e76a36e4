"""Schemathesis hooks of the e2e tier (loaded with SCHEMATHESIS_HOOKS).

`positive_data_acceptance` is told (schemathesis.toml in the test) that a schema-valid
withdrawal, trade or bank account may be refused with 422: the document cannot state
a balance, an address's checksum or network, a minimum, or whether the bank knows an
account. This check keeps that allowance narrow: such a 422 must carry one of those
codes. Any other 422 to a schema-valid request (CUS-3001 request invalid, CUS-1008
invalid amount, CUS-3004 decimals, CUS-1010 unknown asset, ...) means the document
says less than the API checks, and fails the run.
"""

from __future__ import annotations

from typing import Any

import schemathesis

# Refusals on the merits: what only the platform's state, a checksum or a bank can tell.
ON_THE_MERITS = {
    "CUS-1001",  # insufficient funds (the balance)
    "CUS-3002",  # address invalid (a checksum: EIP-55, base58check, bech32)
    "CUS-3003",  # address of another network (a valid address, not of this network)
    "CUS-3010",  # IBAN invalid (the mod-97 check digits)
    "CUS-3011",  # destination refused (a burn address or one of the platform's own)
    "CUS-3012",  # amount below the minimum withdrawal (a setting per asset)
    "CUS-5002",  # bank account unknown (the bank says so)
    # Governance: a signature only a key can make, over this proposal's intent; a record
    # whose validity depends on the governance state (its shape per kind is in the schema).
    "CUS-2005",  # approval signature invalid
    "CUS-2007",  # approval of another intent
    "CUS-2011",  # governance record refused
}


@schemathesis.check
def refused_only_on_the_merits(ctx: Any, response: Any, case: Any) -> bool | None:
    """A schema-valid request answered 422 must name a reason the schema cannot state."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 422:
        return None
    try:
        code = response.json().get("code")
    except ValueError:
        code = None
    if code not in ON_THE_MERITS:
        raise AssertionError(
            f"a schema-valid request was refused with {code}: {response.text[:300]}\n"
            "the OpenAPI document should state this rule"
        )
    return None
