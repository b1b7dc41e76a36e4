"""Chain observations: deposits to platform addresses, seen, final, or undone by a reorg.

An observation is one output (Bitcoin), one ETH value transfer, one ERC-20 Transfer
log or one bank send of ATOM (Cosmos), to an address the platform gave a client, in one
particular block.
Its id includes the block hash: if a reorg drops the block and the transaction
lands again in another, that is a new observation, and the old one is reorged; the
deposit both report is the same one (its position is within the transaction).
Event ids derive from observation ids, so watching a block twice (after a crash)
emits nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sagas.events import Envelope

TX_MINED = "custody.chain.tx_mined.v1"
TX_FINAL = "custody.chain.tx_final.v1"
TX_REORGED = "custody.chain.tx_reorged.v1"
DEPOSIT_SEEN = "custody.chain.deposit_seen.v1"
DEPOSIT_FINAL = "custody.chain.deposit_final.v1"
DEPOSIT_REORGED = "custody.chain.deposit_reorged.v1"
REORG = "custody.chain.reorg.v1"
FINAL_DEPOSIT_REORGED = "custody.alert.final_deposit_reorged.v1"
SOURCE = "/custody/chainwatch"

ObservationState = Literal["seen", "final", "reorged"]


def _event_id(observation_id: str, suffix: str, revival: int) -> str:
    # A block that left the chain and came back is observed anew: new event ids.
    return f"{observation_id}/{suffix}" + (f"#{revival}" if revival else "")


@dataclass(frozen=True)
class RawDeposit:
    """What a chain reader found in a block, before we know whose it is."""

    tx_hash: str
    # Within the transaction, so the same deposit re-mined elsewhere keeps it: "value" for
    # ETH, "log<i>" for the i-th log of the receipt (ERC-20), "vout<n>" for BTC, "msg<i>"
    # for the i-th message's send and "msg<i>.out<j>" for a multi-send's output (ATOM).
    position: str
    address: str
    asset: str
    amount: int


@dataclass(frozen=True)
class BlockScan:
    """One block as the watcher needs it: its hash, deposits to our addresses, and the
    ids of all its transactions (to spot the platform's own), spelled as the chain's
    broadcasters record them: 0x-prefixed lower-case hex on Ethereum, lower-case hex on
    Bitcoin, the chain's uppercase hex on Cosmos."""

    block_hash: str
    parent_hash: str
    deposits: list[RawDeposit]
    txids: list[str]


class OutgoingConfirmation(BaseModel):
    """A platform transaction (a payout) in a block: mined, final, or reorged out."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    chain: str
    operation_id: str
    tx_hash: str
    block_height: int
    block_hash: str
    state: ObservationState
    revival: int = Field(default=0, description="times the block came back after a reorg")


def outgoing_event(obs: OutgoingConfirmation, event_type: str) -> Envelope:
    suffix = {TX_MINED: "mined", TX_FINAL: "final", TX_REORGED: "reorged"}[event_type]
    return Envelope(
        id=_event_id(obs.id, suffix, obs.revival),
        source=SOURCE,
        type=event_type,
        subject=obs.operation_id,
        data=obs.model_dump(mode="json"),
    )


class DepositObservation(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    chain: str
    address: str
    account_id: str
    asset: str
    amount: str
    tx_hash: str
    position: str
    block_height: int
    block_hash: str
    state: ObservationState
    revival: int = Field(default=0, description="times the block came back after a reorg")

    @staticmethod
    def make_id(chain: str, tx_hash: str, position: str, block_hash: str) -> str:
        return f"{chain}:{tx_hash}:{position}@{block_hash}"


def deposit_event(obs: DepositObservation, event_type: str) -> Envelope:
    suffix = {
        DEPOSIT_SEEN: "seen",
        DEPOSIT_FINAL: "final",
        DEPOSIT_REORGED: "reorged",
        FINAL_DEPOSIT_REORGED: "alert",
    }[event_type]
    return Envelope(
        id=_event_id(obs.id, suffix, obs.revival),
        source=SOURCE,
        type=event_type,
        subject=obs.address,
        data=obs.model_dump(mode="json"),
    )


class DroppedBlock(BaseModel):
    height: int
    hash: str


class ReorgObserved(BaseModel):
    """Payload of custody.chain.reorg.v1: blocks the watcher had processed are gone."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    chain: str
    common_ancestor_height: int
    depth: int
    dropped_blocks: list[DroppedBlock]


def reorg_event(chain: str, ancestor_height: int, dropped: list[tuple[int, str]]) -> Envelope:
    top_hash = dropped[-1][1]
    payload = ReorgObserved(
        chain=chain,
        common_ancestor_height=ancestor_height,
        depth=len(dropped),
        dropped_blocks=[DroppedBlock(height=h, hash=x) for h, x in dropped],
    )
    return Envelope(
        id=f"{chain}:reorg@{top_hash}",
        source=SOURCE,
        type=REORG,
        subject=chain,
        data=payload.model_dump(mode="json"),
    )


# Published payload models by event type (the catalogue in docs/events/ is generated from it).
PAYLOADS: dict[str, type[BaseModel]] = {
    DEPOSIT_SEEN: DepositObservation,
    DEPOSIT_FINAL: DepositObservation,
    DEPOSIT_REORGED: DepositObservation,
    FINAL_DEPOSIT_REORGED: DepositObservation,
    REORG: ReorgObserved,
    TX_MINED: OutgoingConfirmation,
    TX_FINAL: OutgoingConfirmation,
    TX_REORGED: OutgoingConfirmation,
}
