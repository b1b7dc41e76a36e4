"""Issue 11, point 7 over the API: a BTC withdrawal to a taproot (P2TR) address completes
and pays OP_1 <32 bytes> on chain; segwit destinations no consensus rule protects, or
with the wrong checksum variant (BIP350), are refused with CUS-3002 and nothing is
written."""

from __future__ import annotations

from bip_utils import SegwitBech32Encoder
from bitcoin import segwit_addr

from adapters.sqldb import SqlDatabase
from tests.e2e.conftest import address, balances, credited, new_client, until_state
from tests.e2e.harness import Running, post

# One platform with the defaults, shared with the other modules that set this (conftest).
SHARED_PLATFORM = True

BTC = 10**8
KEY = bytes.fromhex("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")


def bech32m_v0(hrp: str, program: bytes) -> str:
    """A witness v0 address with the bech32m checksum (BIP350: invalid; encoders refuse)."""
    data = [0, *segwit_addr.convertbits(program, 8, 5)]
    residue = segwit_addr.bech32_hrp_expand(hrp) + data + [0] * 6
    mod = segwit_addr.bech32_polymod(residue) ^ 0x2BC830A3
    checksum = [(mod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(segwit_addr.CHARSET[d] for d in data + checksum)


def test_a_withdrawal_to_a_taproot_address_pays_its_script(run: Running) -> None:
    client_id, _ops, client = new_client(run, "p2tr")
    run.btc_faucet.fund(address(client, client_id, "BTC"), BTC // 2)
    credited(run, client, client_id, {"BTC": BTC // 2})
    path = f"/v1/clients/{client_id}/withdrawals"

    refused = {
        "v1 with a bech32 checksum": segwit_addr.encode("sb", 1, KEY),
        "v0 with a bech32m checksum": bech32m_v0("sb", KEY[:20]),
        "witness v2": SegwitBech32Encoder.Encode("sb", 2, KEY),
        "witness v16": SegwitBech32Encoder.Encode("sb", 16, KEY[:20]),
        "v1 of 20 bytes": SegwitBech32Encoder.Encode("sb", 1, KEY[:20]),
    }
    for why, destination in refused.items():
        reply = post(client, path, {"asset": "BTC", "amount": "0.1", "destination": destination})
        assert reply.status_code == 422, (why, reply.text)
        assert reply.json()["code"] == "CUS-3002", (why, reply.json())
    with SqlDatabase(run.db_url).tx() as conn:
        written = conn.all(
            "select id from operations where client_id = ? and kind = 'withdrawal'", (client_id,)
        )
    assert written == []

    taproot = SegwitBech32Encoder.Encode("sb", 1, KEY)
    body = {"asset": "BTC", "amount": "0.1", "destination": taproot}
    op_id = post(client, path, body).json()["operation_id"]
    done = until_state(client, op_id, "completed", "failed", timeout=180)
    assert done["state"] == "completed", done
    raw = run.btc._rpc("getrawtransaction", done["tx_hash"], 1)
    paid = [o for o in raw["vout"] if o["scriptPubKey"]["hex"] == "5120" + KEY.hex()]
    assert [round(o["value"] * BTC) for o in paid] == [BTC // 10]
    assert balances(client, client_id)["BTC"] == BTC // 2 - BTC // 10
