"""The payout rails' registry (adapters/chains/payouts.py): each payment goes to the rail
of its asset and to no other; two rails for one asset is a configuration error; an asset
no rail pays is retried (transient), never a refusal that would void its reservation; a
rebroadcast reaches only the rails that recorded the operation."""

from __future__ import annotations

import pytest

from adapters.chains.payouts import PayoutRails
from sagas.errors import CustodyError, DependencyUnavailable
from sagas.withdrawal import ChainStatus


class _Rail:
    def __init__(self, name: str, assets: set[str], recorded: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.name = name
        self.assets = frozenset(assets)
        self._recorded = set(recorded)
        self.calls: list[tuple[str, ...]] = []

    def recorded(self, operation_id: str) -> bool:
        return operation_id in self._recorded

    def send(
        self,
        operation_id: str,
        asset: str,
        destination: str,
        amount: int,
        source: str | None = None,
        fee: int = 0,
    ) -> str:
        self.calls.append(
            ("send", operation_id, asset, destination, str(amount), str(source), str(fee))
        )
        return f"{self.name}:{operation_id}"

    def status(self, operation_id: str, asset: str) -> ChainStatus:
        self.calls.append(("status", operation_id, asset))
        return ChainStatus(state="pending", tx_hash=f"{self.name}:{operation_id}", fee_asset=asset)

    def rebroadcast(self, operation_id: str) -> None:
        self.calls.append(("rebroadcast", operation_id))

    def bump(
        self, operation_id: str, asset: str, destination: str, amount: int, percent: int
    ) -> str:
        self.calls.append(("bump", operation_id, asset, str(percent)))
        return f"{self.name}:{operation_id}:bumped"


def test_each_payment_goes_to_its_assets_rail_alone() -> None:
    evm, btc, atom = _Rail("evm", {"ETH", "USDC"}), _Rail("btc", {"BTC"}), _Rail("atom", {"ATOM"})
    rails = PayoutRails([evm, btc, atom])
    assert rails.send("wd:1", "USDC", "0xdest", 5) == "evm:wd:1"
    assert rails.send("wd:2", "ATOM", "cosmos1dest", 7, "cosmos1src", 3) == "atom:wd:2"
    assert rails.status("wd:3", "BTC").tx_hash == "btc:wd:3"
    assert rails.bump("wd:4", "ETH", "0xdest", 5, 120) == "evm:wd:4:bumped"
    assert evm.calls == [
        ("send", "wd:1", "USDC", "0xdest", "5", "None", "0"),
        ("bump", "wd:4", "ETH", "120"),
    ]
    assert btc.calls == [("status", "wd:3", "BTC")]
    assert atom.calls == [("send", "wd:2", "ATOM", "cosmos1dest", "7", "cosmos1src", "3")]


def test_two_rails_for_one_asset_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="two payout rails for ETH"):
        PayoutRails([_Rail("a", {"ETH"}), _Rail("b", {"ETH", "BTC"})])


@pytest.mark.parametrize("call", ["send", "status", "bump"])
def test_an_asset_no_rail_pays_is_retried_not_refused(call: str) -> None:
    btc = _Rail("btc", {"BTC"})
    rails = PayoutRails([btc])
    with pytest.raises(DependencyUnavailable) as raised:
        if call == "send":
            rails.send("wd:1", "ATOM", "cosmos1dest", 7, "cosmos1src", 3)
        elif call == "status":
            rails.status("wd:1", "ATOM")
        else:
            rails.bump("wd:1", "ATOM", "cosmos1dest", 7, 120)
    assert isinstance(raised.value, CustodyError) and raised.value.transient
    assert btc.calls == []


def test_a_rebroadcast_reaches_only_the_rails_that_recorded_it() -> None:
    evm, btc = _Rail("evm", {"ETH"}, {"wd:1"}), _Rail("btc", {"BTC"})
    PayoutRails([evm, btc]).rebroadcast("wd:1")
    assert evm.calls == [("rebroadcast", "wd:1")]
    assert btc.calls == []
