"""One module per service of the local stack; `all_services` lists them in start order."""

from __future__ import annotations

from infra.services.anvil import Anvil
from infra.services.base import Service
from infra.services.btcd import Btcd
from infra.services.cosmos import SimdA, SimdB
from infra.services.kafka import Kafka
from infra.services.openbao import OpenBao
from infra.services.postgres import Postgres
from infra.services.simulators import BankSim, LiquiditySim
from infra.services.temporal import Temporal
from infra.settings import StackSettings


def all_services(settings: StackSettings) -> list[Service]:
    return [
        cls(settings)
        for cls in (
            Postgres,
            Kafka,
            Temporal,
            OpenBao,
            Anvil,
            Btcd,
            SimdA,
            SimdB,
            BankSim,
            LiquiditySim,
        )
    ]
