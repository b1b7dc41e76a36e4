"""`custody stack status`: every service healthy, with its port and version."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from infra.settings import StackSettings

CUSTODY = str(Path(sys.executable).parent / "custody")


def test_status_lists_every_service_healthy_with_port_and_version() -> None:
    out = subprocess.run([CUSTODY, "stack", "status"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = {line.split()[0]: line for line in out.stdout.splitlines()[1:]}
    s = StackSettings()
    expected = {
        "postgres": (s.postgres_port, "15."),
        "kafka": (s.kafka_port, "4.1.1"),
        "temporal": (s.temporal_port, "1.32.0"),
        "openbao": (s.openbao_port, "2.7.2"),
        "anvil": (s.anvil_port, "1.7.1"),
        "btcd": (s.btcd_rpc_port, "0.24.2"),
        "simd": (s.cosmos_rpc_port, "0.46.16"),
        "simd-b": (s.cosmos_b_rpc_port, "0.46.16"),
        "bank": (s.bank_port, "sim-1"),
        "liquidity": (s.liquidity_port, "sim-1"),
    }
    assert set(rows) == set(expected)
    for name, (port, version) in expected.items():
        fields = rows[name].split()
        assert fields[1] == "healthy", rows[name]
        assert fields[2].startswith(version), rows[name]
        assert f"127.0.0.1:{port}" in rows[name]
