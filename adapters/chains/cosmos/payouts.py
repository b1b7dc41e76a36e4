"""ATOM payouts (decision 0035): one MsgSend from the client's own address, which pays the
fee coin, through the Cosmos adapter (recorded before it is broadcast, one sequence per
operation); final once in a block (Tendermint)."""

from __future__ import annotations

from adapters.chains.cosmos.staking import CosmosDelegations
from sagas.errors import ChainRejected, DependencyUnavailable
from sagas.withdrawal import ChainStatus


class CosmosPayouts:
    """sagas.ports.Payouts for the chain's staking denom's asset (ATOM)."""

    def __init__(self, delegations: CosmosDelegations, asset: str = "ATOM") -> None:
        self._cosmos = delegations
        self.assets = frozenset({asset})
        self._asset = asset

    def __repr__(self) -> str:
        return f"CosmosPayouts({self._asset})"

    def recorded(self, operation_id: str) -> bool:
        return self._cosmos.recorded(operation_id) is not None

    def send(
        self,
        operation_id: str,
        asset: str,
        destination: str,
        amount: int,
        source: str | None = None,
        fee: int = 0,
    ) -> str:
        """The signer checks it is the withdrawal intent's client's own address, to its
        destination, for its amount; a refusal with nothing in a block is nothing sent."""
        if not source or fee <= 0:
            raise ChainRejected(f"an {asset} payment leaves from the client's address with its fee")
        try:
            return self._cosmos.send(operation_id, source, destination, amount, fee)
        except ValueError as exc:  # not an address (the message's own validation)
            raise ChainRejected(str(exc)) from exc
        except DependencyUnavailable:
            # Recorded (signed) and not sent yet (an earlier sequence of the address is not
            # on the node: SequenceGap): it is the payment; its status says pending, the
            # saga rebroadcasts and alerts when it is stuck, rather than retrying here.
            recorded = self._cosmos.recorded(operation_id)
            if recorded is None:
                raise
            return recorded

    def status(self, operation_id: str, asset: str) -> ChainStatus:
        """In a block is final; failed in its block paid its fee; refused at the node paid
        nothing."""
        outcome = self._cosmos.outcome(operation_id)
        if outcome.state == "pending":
            return ChainStatus(state="pending", tx_hash=outcome.tx_hash, fee_asset=self._asset)
        return ChainStatus(
            state="final" if outcome.state == "succeeded" else "reverted",
            tx_hash=outcome.tx_hash,
            confirmations=0 if outcome.height is None else 1,
            fee=outcome.fee,
            fee_asset=self._asset,
        )

    def rebroadcast(self, operation_id: str) -> None:
        if self.recorded(operation_id):
            self._cosmos.outcome(operation_id)  # a pending one's bytes go to the node again

    def bump(
        self, operation_id: str, asset: str, destination: str, amount: int, percent: int
    ) -> str:
        # A refused decision: the saga waits for the next.
        raise ChainRejected(f"an {asset} payment's fee is fixed when signed: no bump")
