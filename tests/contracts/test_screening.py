"""Screening contract: adapters/operations/screening.py DenyListScreening on the stack's
btcd and anvil, and the deny-list fake of the deposit saga's tests (DenyList in
tests/sagas/test_deposit_saga.py; NoHits/Clean of the other saga tests have no list).

Checked: no addresses, or only clean ones, pass (None); a denied one is refused with a
reason naming it, and with several hits the reason is the first's; the sources of a
transaction are the addresses that funded it (a faucet's coin on Bitcoin, the payer of an
ETH transfer, the sender of a token Transfer) and screening them refuses a denied
funder; an EVM address on the list matches in any letter case (EIP-55 case is only a
checksum). DenyListScreening also re-reads its deny file, comments allowed."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from bitcoin import segwit_addr

from adapters.chains.bitcoin.faucet import BtcFaucet
from adapters.chains.bitcoin.node import BtcdNode
from adapters.chains.ethereum.faucet import DevChainFaucet
from adapters.chains.ethereum.node import Web3EthereumNode
from adapters.chains.ethereum.signer import InMemorySigner
from adapters.operations.screening import DenyListScreening
from sagas.ports import Screening
from services.settings import PlatformSettings
from tests.sagas.test_deposit_saga import DenyList

Make = Callable[[Sequence[str]], Screening]  # a screening with this deny list
Funded = Callable[[str], tuple[str, list[str]]]  # chain -> (a tx hash, who funded it)
EVM = "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"
CLEAN, HIT_A, HIT_B = "sb1qclean", "sb1qhita", "sb1qhitb"
HRP = {"mainnet": "bc", "testnet": "tb", "regtest": "bcrt", "simnet": "sb"}


class ScreeningContract:
    @pytest.fixture
    def make(self) -> Make:
        raise NotImplementedError

    @pytest.fixture
    def funded(self) -> Funded:
        raise NotImplementedError

    def test_is_the_port(self, make: Make) -> None:
        assert isinstance(make([]), Screening)

    def test_clean_addresses_pass(self, make: Make) -> None:
        screening = make([HIT_A])
        assert screening.check("bitcoin", []) is None
        assert screening.check("bitcoin", [CLEAN, "sb1qhit"]) is None

    def test_the_reason_names_the_first_hit(self, make: Make) -> None:
        screening = make([HIT_A, HIT_B])
        reason = screening.check("bitcoin", [CLEAN, HIT_B, HIT_A])
        assert reason is not None and HIT_B in reason and HIT_A not in reason

    @pytest.mark.parametrize("chain", ["bitcoin", "ethereum"])
    def test_sources_are_the_funders_and_a_denied_one_refuses(
        self, make: Make, funded: Funded, chain: str
    ) -> None:
        tx_hash, funders = funded(chain)
        assert sorted(make([]).sources(chain, tx_hash)) == sorted(funders)
        screening = make([funders[0]])
        reason = screening.check(chain, screening.sources(chain, tx_hash))
        assert reason is not None and funders[0] in reason

    def test_evm_addresses_match_in_any_case(self, make: Make) -> None:
        reason = make([EVM.lower()]).check("ethereum", [EVM])
        assert reason is not None and EVM in reason
        assert make([EVM]).check("ethereum", [EVM.lower()]) is not None


class TestDepositSagaDenyList(ScreeningContract):
    @pytest.fixture
    def make(self) -> Make:
        return lambda deny: DenyList(denied=set(deny), source="sb1qfunder")

    @pytest.fixture
    def funded(self) -> Funded:
        return lambda chain: (f"{chain}-tx", ["sb1qfunder"])


@pytest.mark.stack
class TestDenyListScreening(ScreeningContract):
    @pytest.fixture
    def nodes(self, stack_settings: PlatformSettings) -> tuple[Web3EthereumNode, BtcdNode]:
        s = stack_settings
        return Web3EthereumNode(s.eth_rpc_url), BtcdNode(
            s.btc_rpc_url, s.btc_rpc_auth(), s.btc_network
        )

    @pytest.fixture
    def make(
        self, nodes: tuple[Web3EthereumNode, BtcdNode], stack_settings: PlatformSettings
    ) -> Make:
        return lambda deny: DenyListScreening(
            *nodes, deny=deny, btc_network=stack_settings.btc_network
        )

    @pytest.fixture
    def funded(
        self, nodes: tuple[Web3EthereumNode, BtcdNode], stack_settings: PlatformSettings
    ) -> Funded:
        eth, btc = nodes

        def fund(chain: str) -> tuple[str, list[str]]:
            if chain == "bitcoin":
                key = json.loads(
                    (stack_settings.btc_rpc_credentials.parent / "faucet.json").read_text()
                )
                faucet = BtcFaucet(btc, stack_settings.btc_network, key["wif"], key["address"])
                to = segwit_addr.encode(
                    HRP[stack_settings.btc_network], 0, list(secrets.token_bytes(20))
                )
                txid = faucet.fund(to, 50_000)
                btc.mine(1)
                return txid, [faucet.address]
            payer = InMemorySigner.generate()
            DevChainFaucet(eth.web3).fund_eth(payer.address, 10**17)
            tx_hash = eth.send_eth(payer, InMemorySigner.generate().address, 1_000)
            eth.wait_receipt(tx_hash, 30)
            return tx_hash, [payer.address]

        return fund

    def test_a_token_transfer_names_the_tokens_sender(
        self, make: Make, nodes: tuple[Web3EthereumNode, BtcdNode], stack_settings: PlatformSettings
    ) -> None:
        eth = nodes[0]
        holder = InMemorySigner.generate().address
        mint = DevChainFaucet(eth.web3).mint_token(stack_settings.eth_token_address, holder, 5)
        minter = eth.web3.eth.accounts[0]  # its tokens come from the zero address
        assert sorted(make([]).sources("ethereum", mint)) == sorted([minter, "0x" + "00" * 20])

    def test_the_deny_file_is_read_again_on_each_check(
        self, tmp_path: Path, nodes: tuple[Web3EthereumNode, BtcdNode]
    ) -> None:
        deny = tmp_path / "deny.txt"
        deny.write_text(f"# sanctions list\n{HIT_A}  # listed today\n")
        screening = DenyListScreening(*nodes, deny_file=deny)
        assert screening.check("bitcoin", [HIT_A]) is not None
        deny.write_text("# sanctions list\n")
        assert screening.check("bitcoin", [HIT_A]) is None
