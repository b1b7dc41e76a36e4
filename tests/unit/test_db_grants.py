"""The database grants as data (adapters/ledger/grants.py) and the stack's role set-up
helpers, without a server (tests/integration/test_db_roles.py asks the server)."""

from __future__ import annotations

import re

from adapters.ledger.grants import PROCESSES, TABLES, grants_for, role, role_url
from infra.services.postgres import HBA_BEGIN, hba_block, scram_verifier, with_hba_block
from services.settings import PlatformSettings

_PRIVILEGE = re.compile(r"(select|insert|update|delete)(\([a-z_]+(, [a-z_]+)*\))?")


def _writes(privileges: str) -> bool:
    return any(word in privileges for word in ("insert", "update", "delete"))


def test_every_grant_names_a_known_process_and_a_valid_privilege() -> None:
    for table, by in TABLES.items():
        assert set(by) <= set(PROCESSES), table
        for privileges in by.values():
            # split on the commas between privileges, not inside a column list
            parts = re.split(r",\s*(?![^()]*\))", privileges)
            assert all(_PRIVILEGE.fullmatch(p) for p in parts), (table, privileges)


def test_only_the_worker_moves_an_operation_on_and_only_the_signer_touches_its_record() -> None:
    assert [p for p, g in TABLES["operations"].items() if "update" in g] == ["worker"]
    assert TABLES["signer_signatures"] == {"signer": "select, insert"}
    # The worker's payment adapters read the claims (never write them).
    assert TABLES["signer_claims"] == {"signer": "select, insert", "worker": "select"}
    assert not any(_writes(g) for p, g in grants_for("relay").items() if p != "ledger_outbox")
    assert grants_for("audit") == {} and grants_for("projector") == {}


def test_a_role_url_keeps_the_database_and_carries_no_secret() -> None:
    url = role_url("postgresql://custody@127.0.0.1:15432/e2e_x", "api", "/s/custody_api.pgpass")
    assert url == ("postgresql://custody_api@127.0.0.1:15432/e2e_x?passfile=/s/custody_api.pgpass")
    assert role("chainwatch") == "custody_chainwatch"


def test_settings_pick_the_process_url_and_fall_back_to_the_owner() -> None:
    s = PlatformSettings(
        ledger_url="postgresql://custody@h:1/db",
        ledger_url_api="postgresql://custody_api@h:1/db?passfile=/p",
    )
    assert s.db_url("api") == "postgresql://custody_api@h:1/db?passfile=/p"
    assert s.db_url("worker") == "postgresql://custody@h:1/db"
    assert PlatformSettings(ledger_url="sqlite:///x.db").role_urls("sqlite:///x.db") == {}


def test_the_hba_block_goes_first_once() -> None:
    original = "# comment\nlocal all all trust\nhost all all 127.0.0.1/32 trust\n"
    once = with_hba_block(original, hba_block(["custody_api", "custody_relay"]))
    assert once.startswith(HBA_BEGIN)
    assert with_hba_block(once, hba_block(["custody_api", "custody_relay"])) == once
    assert once.index("scram-sha-256") < once.index("trust")


def test_the_server_gets_a_verifier_not_the_password() -> None:
    verifier = scram_verifier("correct horse battery staple")
    assert re.fullmatch(
        r"SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+", verifier
    )
    assert "horse" not in verifier
