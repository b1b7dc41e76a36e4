"""Composition root of the Temporal worker: every dependency is a parameter."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
)
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions
from web3 import Web3

from adapters.chains.bitcoin.batches import BitcoinBatches
from adapters.chains.bitcoin.sender import BitcoinSender
from adapters.chains.cosmos.staking import CosmosDelegations
from adapters.chains.ethereum.broadcaster import EvmBroadcaster
from adapters.chains.payouts import ChainPayouts
from adapters.operations.observations import SqlDepositObservations
from adapters.operations.screening import DenyListScreening
from adapters.temporal.signing import TemporalSigningClient
from sagas.deposit.activities import DepositActivities
from sagas.deposit.workflows import DepositWorkflow
from sagas.settlement.activities import SettlementActivities
from sagas.settlement.workflows import SettlementWorkflow
from sagas.signing.workflows import SignBtcWorkflow, SignCosmosWorkflow, SignEvmWorkflow
from sagas.smoke import TASK_QUEUE as SMOKE_QUEUE
from sagas.smoke.activities import SmokeActivities
from sagas.smoke.workflows import SmokeWorkflow
from sagas.staking.activities import StakingActivities
from sagas.staking.rewards import RewardsActivities, RewardsInput, StakingRewardsWorkflow
from sagas.staking.slashing import StakingWatchWorkflow, WatchActivities, WatchInput
from sagas.staking.workflows import RedelegateWorkflow, StakeWorkflow, UnstakeWorkflow
from sagas.trade.activities import TradeActivities
from sagas.trade.workflows import TradeWorkflow
from sagas.withdrawal.activities import WithdrawalActivities
from sagas.withdrawal.workflows import WithdrawalWorkflow
from services.app.addresses import check_bitcoin, check_ethereum
from services.app.destinations import refuse_destination
from services.app.settlements import settlement_input
from services.platform import ASSETS, NATIVE, Platform

SAGA_WORKFLOWS = [
    WithdrawalWorkflow,
    DepositWorkflow,
    TradeWorkflow,
    SettlementWorkflow,
    SignEvmWorkflow,
    SignBtcWorkflow,
    SignCosmosWorkflow,
    StakeWorkflow,
    UnstakeWorkflow,
    RedelegateWorkflow,
    StakingRewardsWorkflow,
    StakingWatchWorkflow,
]
# Gas per Cosmos transaction kind: fixed, the chain's simulation undercounts staking
# messages (measured on simd v0.46.16: a delegate uses ~142k, an undelegate ~195k).
COSMOS_GAS = {
    "send": 200_000,
    "delegate": 250_000,
    "undelegate": 300_000,
    "redelegate": 350_000,  # ~242k measured
    "withdraw_rewards": 250_000,
}
# The sagas' models and pure functions are deterministic: the sandbox shares them with the
# worker instead of re-importing them per workflow (one class per model, less memory).
SANDBOX = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("sagas")
)


def settlement_destination_check(platform: Platform) -> Callable[[str, str], None]:
    """What a provider's settlement instruction must pass before the platform pays it:
    the checks a client's withdrawal destination gets (a valid address of this network,
    not a burn address, not one of the platform's own). A provider's Ethereum address
    may come without its EIP-55 checksum: machines do not make typos."""

    def check(asset: str, to: str) -> None:
        chain = ASSETS[asset][1]
        if chain == "ethereum":
            destination = check_ethereum(
                Web3.to_checksum_address(to) if Web3.is_address(to) else to
            )
        else:
            destination = check_bitcoin(to, platform.settings.btc_network)
        tokens = platform.tokens.values()
        refuse_destination(platform.keys.lookup, tokens, "", chain, destination)

    return check


def saga_activities(
    platform: Platform,
    client: Client,
    loop: asyncio.AbstractEventLoop,
    pause: Callable[[str], None] = lambda _step: None,
) -> list[Callable[..., object]]:
    s = platform.settings
    signer = TemporalSigningClient(
        client, loop, s.saga_task_queue, after_sign=pause, signer_queue=s.signer_task_queue
    )
    lanes = [(hot.index, hot.address) for hot in platform.hot_wallets()]
    sender = BitcoinSender(
        platform.db_url, platform.btc, signer, platform.keys, platform.deriver, migrate=False
    )
    # Always through the queue (a maximum of 1: batches of one), so that a withdrawal
    # batched before a change of the setting is found where it is paid.
    batches = BitcoinBatches(
        platform.db_url,
        sender,
        signer,
        window=s.btc_batch_window_seconds,
        max_outputs=max(1, s.btc_batch_max_outputs),
        pause=pause,
    )
    delegations = CosmosDelegations(
        platform.db_url,
        platform.cosmos,
        signer,
        platform.keys,
        s.platform_wallet,
        s.cosmos_chain_id,
        s.cosmos_denom,
        COSMOS_GAS,
        deriver=platform.deriver,
        migrate=False,
    )
    payouts = ChainPayouts(
        platform.db_url,
        s.platform_wallet,
        (
            EvmBroadcaster(platform.db_url, platform.eth, migrate=False),
            platform.eth,
            signer,
            lanes,
        ),
        platform.tokens,
        s.eth_confirmations,
        (sender, platform.btc),
        s.btc_confirmations,
        s.btc_fee_rate,
        (s.eth_gas_limit_eth, s.eth_gas_limit_token),
        batches,
        cosmos=delegations,
    )
    screening = DenyListScreening(
        platform.eth,
        platform.btc,
        deny_file=s.screening_deny_file,
        btc_network=s.btc_network,
        cosmos=platform.cosmos,
    )
    withdrawals = WithdrawalActivities(
        platform.ledger,
        platform.operations,
        platform.policies,
        payouts,
        platform.intents,
        platform.verified,
        platform.fee_cap,
        screening,
        pause,
    )
    deposits = DepositActivities(
        platform.ledger, platform.operations, SqlDepositObservations(platform.db_url), screening
    )
    trades = TradeActivities(
        platform.ledger,
        platform.operations,
        platform.trades,
        platform.bank,
        platform.providers,
        pause,
        fill_tolerance_bps=s.trade_fill_tolerance_bps,
    )
    settlements = SettlementActivities(
        platform.ledger,
        platform.operations,
        platform.trades,
        platform.bank,
        platform.providers,
        payouts,
        platform.settlement_address,
        settlement_destination_check(platform),
        platform.intents,
        platform.fee_cap,
        platform.verified,
    )
    staking = StakingActivities(
        platform.ledger,
        platform.operations,
        platform.policies,
        platform.intents,
        platform.verified,
        delegations,
        platform.fee_cap,
        pause,
        commission_bps=platform.settings.staking_commission_bps,
    )
    rewards = RewardsActivities(platform.ledger, platform.operations, delegations)
    watch = WatchActivities(platform.ledger, platform.operations, delegations)
    return [
        *settlements.all(),
        *trades.all(),
        *withdrawals.all(),
        *deposits.all(),
        *staking.all(),
        *rewards.all(),
        *watch.all(),
    ]


def build_workers(
    client: Client,
    platform: Platform | None = None,
    pause: Callable[[str], None] = lambda _step: None,
    executor: concurrent.futures.Executor | None = None,
) -> list[Worker]:
    smoke = SmokeActivities()
    workers = [
        Worker(
            client, task_queue=SMOKE_QUEUE, workflows=[SmokeWorkflow], activities=[smoke.digest]
        ),
    ]
    if platform is not None:
        workers.append(
            Worker(
                client,
                task_queue=platform.settings.saga_task_queue,
                workflows=SAGA_WORKFLOWS,
                workflow_runner=SANDBOX,
                activities=saga_activities(platform, client, asyncio.get_running_loop(), pause),
                # Remote and local activities share the executor: a thread for each slot.
                activity_executor=executor or concurrent.futures.ThreadPoolExecutor(max_workers=64),
                max_concurrent_activities=32,
                max_concurrent_local_activities=32,
            )
        )
    return workers


def rewards_input(platform: Platform) -> RewardsInput:
    s = platform.settings
    return RewardsInput(
        asset=NATIVE["cosmos"],
        commission_bps=s.staking_commission_bps,
        claim_fee=s.staking_claim_fee,
        min_claim=s.staking_min_claim,
        poll_seconds=s.chain_poll_seconds,
    )


async def ensure_rewards_schedule(client: Client, platform: Platform) -> str | None:
    """The Temporal schedule that claims and books staking rewards every
    `staking_rewards_every_seconds` (idempotent); its id, or None when it is off."""
    s = platform.settings
    if s.staking_rewards_every_seconds <= 0:
        return None
    if s.staking_min_claim <= s.staking_claim_fee:
        raise ValueError("staking_min_claim must be above staking_claim_fee")
    action = ScheduleActionStartWorkflow(
        StakingRewardsWorkflow.run,
        rewards_input(platform),
        id=f"rw:{s.staking_rewards_schedule_id}",
        task_queue=s.saga_task_queue,
    )
    return await keep_schedule(
        client, s.staking_rewards_schedule_id, action, s.staking_rewards_every_seconds
    )


async def ensure_watch_schedule(client: Client, platform: Platform) -> str | None:
    """The Temporal schedule that compares staked positions with the chain (slashing)
    every `staking_watch_every_seconds` (idempotent); its id, or None when it is off."""
    s = platform.settings
    if s.staking_watch_every_seconds <= 0:
        return None
    action = ScheduleActionStartWorkflow(
        StakingWatchWorkflow.run,
        WatchInput(asset=NATIVE["cosmos"]),
        id=f"sw:{s.staking_watch_schedule_id}",
        task_queue=s.saga_task_queue,
        # A run that cannot finish (its history no longer replays after an upgrade) ends,
        # so the schedule, which never starts two at once, goes on.
        execution_timeout=timedelta(minutes=10),
    )
    return await keep_schedule(
        client, s.staking_watch_schedule_id, action, s.staking_watch_every_seconds
    )


async def keep_schedule(
    client: Client, schedule_id: str, action: ScheduleActionStartWorkflow, every_seconds: int
) -> str:
    """The schedule `schedule_id` starting `action` every `every_seconds`, never two
    runs at once: created, or brought to this configuration if it exists; its id."""
    schedule = Schedule(
        action=action,
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=every_seconds))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:
        await client.get_schedule_handle(schedule_id).update(
            lambda _old: ScheduleUpdate(schedule=schedule)
        )
    return schedule_id


async def ensure_settlement_schedule(client: Client, platform: Platform) -> str | None:
    """The Temporal schedule that settles every `settlement_every_seconds` (idempotent);
    its id, or None when settlement is on demand only."""
    s = platform.settings
    if s.settlement_every_seconds <= 0:
        return None
    action = ScheduleActionStartWorkflow(
        SettlementWorkflow.run,
        settlement_input(platform),
        id=f"st:{s.settlement_schedule_id}",
        task_queue=s.saga_task_queue,
    )
    # Exists already: brought to this configuration (counterparties, timeouts, period).
    return await keep_schedule(client, s.settlement_schedule_id, action, s.settlement_every_seconds)
