"""Where the stack lives, its pinned versions and its ports (each overridable by env)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
INFRA_DIR = Path(__file__).resolve().parent

# Pinned versions of what infra/ installs outside PyPI (PyPI pins are in pyproject.toml).
KAFKA_VERSION = "4.1.1"  # also in infra/kafka/pom.xml
BTCD_VERSION = "v0.24.2"
ANVIL_VERSION = "1.7.1"  # also in infra/npm/package.json
OPENZEPPELIN_VERSION = "4.9.6"  # also in infra/npm/package.json
POSTGRES_MAJOR = "15"  # Debian bookworm's PostgreSQL
COSMOS_SDK_VERSION = "v0.46.16"  # simapp's simd; also in infra/cosmos/go.mod


class StackSettings(BaseSettings):
    """Stack layout and ports; env vars CUSTODY_STACK_DIR, CUSTODY_KAFKA_PORT, ..."""

    model_config = SettingsConfigDict(env_prefix="CUSTODY_", extra="ignore")

    stack_dir: Path = Field(default=REPO_ROOT / ".stack")
    host: str = "127.0.0.1"

    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    temporal_port: int = 17233
    temporal_ui_port: int = 18233
    temporal_http_port: int = 17243
    temporal_metrics_port: int = 17253
    openbao_port: int = 18200
    openbao_cluster_port: int = 18201
    anvil_port: int = 18545
    btcd_rpc_port: int = 18556
    btcd_p2p_port: int = 18555
    postgres_port: int = 15432
    bank_port: int = 18300
    liquidity_port: int = 18310
    # The Cosmos SDK chain's two validator nodes (simd = A, simd-b = B), outside the
    # 15000-19999 range of the rest of the stack and below the ephemeral ports.
    cosmos_rpc_port: int = 20657
    cosmos_p2p_port: int = 20656
    cosmos_grpc_port: int = 20090
    cosmos_grpc_web_port: int = 20091
    cosmos_api_port: int = 20317
    cosmos_b_rpc_port: int = 21657
    cosmos_b_p2p_port: int = 21656
    cosmos_b_grpc_port: int = 21090
    cosmos_b_grpc_web_port: int = 21091
    cosmos_b_api_port: int = 21317

    # Seconds `up` waits for one service to become healthy.
    start_timeout: float = 120.0

    @property
    def bin_dir(self) -> Path:
        return self.stack_dir / "bin"

    @property
    def env_file(self) -> Path:
        """Connection settings the stack publishes for the platform and the tests."""
        return self.stack_dir / "stack.env"
