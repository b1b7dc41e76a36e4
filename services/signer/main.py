"""`python -m services.signer.main`: the signer process. Logs in to OpenBao with the
signer's AppRole (the only role that may unwrap seeds) and serves the signing
activities on the `custody-signer` Temporal task queue until stopped."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
import time
from collections.abc import Callable
from datetime import timedelta

from temporalio.worker import Worker

from adapters.governance.store import LiveGovernance, SqlGovernanceStore
from adapters.keys.hd import BipDeriver
from adapters.keys.openbao import OpenBaoKeyWrapper
from adapters.keys.store import SqlKeyStore
from adapters.operations.guard import CosmosRules, SigningGuard
from adapters.operations.intents import SqlIntentStore
from adapters.operations.screening import DenyListScreening
from adapters.operations.store import SqlOperationStore
from adapters.temporal import connect
from sagas.signing import SignCosmosRequest, UnsignedBtcTransaction
from sagas.signing.activities import SigningActivities
from services.platform import ASSETS
from services.settings import PlatformSettings
from services.signer.signer import Signer


def _screening(settings: PlatformSettings) -> Callable[[str], bool]:
    """The signer screens a destination itself (the deny list the sagas use)."""
    deny = DenyListScreening(None, None, deny_file=settings.screening_deny_file)
    return lambda destination: deny.check("any", [destination]) is not None


def build_signer(settings: PlatformSettings, db_url: str | None = None) -> Signer:
    url = db_url or settings.db_url("signer")
    unwrapper = OpenBaoKeyWrapper(
        settings.openbao_addr, *settings.approle("custody-signer"), settings.openbao_kek
    )
    guard = SigningGuard(
        SqlOperationStore(url, migrate=False),
        url,
        {"CTUSD": settings.eth_token_address},
        settings.eth_chain_id,
        settings.signer_max_fee_per_gas,
        (settings.eth_gas_limit_eth, settings.eth_gas_limit_token),
        settings.signer_max_btc_fee,
        SqlIntentStore(url, migrate=False),
        LiveGovernance(SqlGovernanceStore(url, settings.governance_genesis_hash, migrate=False)),
        {code: asset.decimals for code, (asset, _chain) in ASSETS.items()},
        _screening(settings),
        {code: chain for code, (_asset, chain) in ASSETS.items()},
        hot_lanes=settings.eth_hot_lanes,
        cosmos=CosmosRules(
            chain_id=settings.cosmos_chain_id,
            denom=settings.cosmos_denom,
            validators=frozenset(settings.allowed_validators()),
            max_fee=settings.signer_max_cosmos_fee,
            claim_every=timedelta(seconds=settings.signer_cosmos_claim_every_seconds),
        ),
    )
    deriver = BipDeriver(settings.btc_network, settings.cosmos_address_prefix)
    return Signer(unwrapper, SqlKeyStore(url, migrate=False), deriver, guard)


class _Slow:
    """The signer behind a delay (CUSTODY_SIGNER_DELAY_SECONDS, tests only)."""

    def __init__(self, signer: Signer, delay: float) -> None:
        self._signer, self._delay = signer, delay

    def sign_evm_transaction(
        self, operation: str, wallet_id: str, index: int, tx: dict[str, object]
    ) -> bytes:
        time.sleep(self._delay)
        return self._signer.sign_evm_transaction(operation, wallet_id, index, tx)

    def sign_btc_transaction(
        self, operation: str, wallet_id: str, tx: UnsignedBtcTransaction
    ) -> bytes:
        time.sleep(self._delay)
        return self._signer.sign_btc_transaction(operation, wallet_id, tx)

    def sign_cosmos_transaction(self, request: SignCosmosRequest) -> bytes:
        time.sleep(self._delay)
        return self._signer.sign_cosmos_transaction(request)


async def serve(db_url: str | None = None) -> None:
    settings = PlatformSettings.load()
    signer = build_signer(settings, db_url)
    activities = SigningActivities(signer, signer, signer)
    if settings.signer_delay_seconds > 0:
        if settings.eth_chain_id != 31337:  # fault injection: the dev chain only
            raise SystemExit("CUSTODY_SIGNER_DELAY_SECONDS is for tests on the dev chain")
        slow = _Slow(signer, settings.signer_delay_seconds)
        activities = SigningActivities(slow, slow, slow)
    client = await connect(
        settings.temporal_address, settings.temporal_namespace, settings.temporal_transport()
    )
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        worker = Worker(
            client,
            task_queue=settings.signer_task_queue,
            activities=[activities.sign_evm, activities.sign_btc, activities.sign_cosmos],
            # A refusal is permanent (KeyAccessDenied): the workflow does not retry it.
            activity_executor=pool,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with worker:
            queue = settings.signer_task_queue
            logging.getLogger("custody.signer").info("serving %s", queue)
            print(f"signer ready on task queue {queue}", flush=True)
            await stop.wait()


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--db-url", help="default: CUSTODY_LEDGER_URL_SIGNER, else CUSTODY_LEDGER_URL"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve(args.db_url))


if __name__ == "__main__":
    main()
