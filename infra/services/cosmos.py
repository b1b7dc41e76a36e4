"""A two-validator Cosmos SDK chain (simapp's `simd` v0.46.16), built with `go build` from
infra/cosmos, its state kept across restarts (docs/decisions/0027-cosmos-chain-for-staking.md).

Validator A (`simd`, ~90 % of the power) is the platform's; validator B (`simd-b`, ~10 %)
is the one tests stop: A alone still has more than 2/3 of the power, so blocks go on and
B is jailed and slashed for downtime within ~25 s.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from infra import proc
from infra.services.base import Say, Service, write_private
from infra.settings import COSMOS_SDK_VERSION, INFRA_DIR, StackSettings

GO_MODULE = INFRA_DIR / "cosmos"  # go.mod, go.sum, main.go
SDK = "github.com/cosmos/cosmos-sdk"
CHAIN_ID = "custody-pos-1"
DENOM = "uatom"  # 6 decimals: 1 ATOM = 1_000_000 uatom
DISPLAY_DENOM = "atom"
DENOM_DECIMALS = 6
ADDRESS_PREFIX = "cosmos"
ATOM = 10**DENOM_DECIMALS
# Self-delegations at genesis: consensus power is tokens / 10**6, so 90 and 10.
VALIDATOR_A_BOND = 90 * ATOM
VALIDATOR_B_BOND = 10 * ATOM
VALIDATOR_ACCOUNT_BALANCE = 1_000 * ATOM
FAUCET_BALANCE = 1_000_000 * ATOM
KEYRING = ["--keyring-backend", "test"]  # unencrypted keyring: a test chain's keys only

# Genesis parameters tests rely on (staking and slashing for downtime).
UNBONDING_TIME = "30s"
SIGNED_BLOCKS_WINDOW = 10
MIN_SIGNED_PER_WINDOW = "0.500000000000000000"
SLASH_FRACTION_DOWNTIME = "0.100000000000000000"
DOWNTIME_JAIL_DURATION = "60s"  # genesis validation refuses less than 60 s
TIMEOUT_COMMIT = "1s"
# Healthy means blocks advance: a new block within this many seconds.
BLOCK_WAIT_S = 4.0


def _sources_stamp() -> str:
    """Rebuild when the module (go.mod, go.sum, main.go) changes."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((GO_MODULE / name).read_bytes())
    return digest.hexdigest()


def _ldflags() -> str:
    return " ".join(
        [
            "-s -w",
            f"-X {SDK}/version.Name=sim",
            f"-X {SDK}/version.AppName=simd",
            f"-X {SDK}/version.Version={COSMOS_SDK_VERSION}",
        ]
    )


def _set_toml(path: Path, values: dict[str, str]) -> None:
    """Set `key = value` lines of a Tendermint/SDK toml file (each key occurs once there)."""
    text = path.read_text()
    for key, value in values.items():
        text, count = re.subn(rf"(?m)^{re.escape(key)} = .*$", f"{key} = {value}", text)
        if count != 1:
            raise RuntimeError(f"{path}: expected one `{key} =` line, found {count}")
    path.write_text(text)


class _SimdNode(Service):
    """One validator process of the chain; the subclasses say which one and its ports."""

    stop_signal = signal.SIGTERM  # simd stops Tendermint and flushes its stores on TERM
    moniker: str

    @property
    def binary(self) -> Path:
        return self.s.bin_dir / "simd"

    @property
    def stamp_file(self) -> Path:
        return self.s.bin_dir / "simd.installed"

    @property
    def home(self) -> Path:
        return self.dir / "home"

    @property
    def marker(self) -> str:
        # The home dir, not self.dir: ".../simd" is a prefix of ".../simd-b".
        return f"{self.home} "

    @property
    def chain_file(self) -> Path:
        """Written last when the genesis is made: the chain's ids and addresses."""
        return self.s.stack_dir / "simd" / "chain.json"

    @property
    def faucet_file(self) -> Path:
        """The funded faucet account's mnemonic and address: tests fund from it."""
        return self.s.stack_dir / "simd" / "faucet.json"

    # --- install ------------------------------------------------------------
    def is_installed(self) -> bool:
        if not (self.binary.exists() and self.stamp_file.exists()):
            return False
        if self.stamp_file.read_text() != _sources_stamp():
            return False
        return self.version() == COSMOS_SDK_VERSION.lstrip("v")

    def install(self, say: Say) -> None:
        say(
            f"go build {SDK}@{COSMOS_SDK_VERSION} simapp/simd (infra/cosmos; Go module proxy, "
            "~450 MB of modules and a few minutes on a fresh machine)"
        )
        self.s.bin_dir.mkdir(parents=True, exist_ok=True)
        partial = self.s.bin_dir / "simd.partial"
        # Pure Go: goleveldb and btcec need no cgo, ledger support is not built in.
        env = {**os.environ, "CGO_ENABLED": "0"}
        build = ["go", "build", "-trimpath", "-buildvcs=false", "-ldflags", _ldflags()]
        proc.run(
            [*build, "-o", str(partial), "."],
            cwd=GO_MODULE,
            env=env,
        )
        partial.replace(self.binary)
        self.stamp_file.write_text(_sources_stamp())

    def version(self) -> str:
        return proc.run([str(self.binary), "version"]).stdout.strip().lstrip("v")

    # --- ports and command ----------------------------------------------------
    def _peer(self) -> _SimdNode:
        return SimdB(self.s) if isinstance(self, SimdA) else SimdA(self.s)

    def prepare(self, say: Say) -> None:
        ensure_genesis(self.s, say)

    def command(self) -> list[str]:
        p = self.ports()
        peer = self._peer()
        chain = json.loads(self.chain_file.read_text())
        peer_id = chain["node_ids"][peer.name]
        h = self.s.host
        return [
            str(self.binary),
            "start",
            "--home",
            str(self.home),
            f"--rpc.laddr=tcp://{h}:{p['rpc']}",
            f"--p2p.laddr=tcp://{h}:{p['p2p']}",
            f"--p2p.external-address={h}:{p['p2p']}",
            f"--p2p.persistent_peers={peer_id}@{h}:{peer.ports()['p2p']}",
            f"--grpc.address={h}:{p['grpc']}",
            f"--grpc-web.address={h}:{p['grpc-web']}",
            "--api.enable",
            f"--api.address=tcp://{h}:{p['api']}",
            f"--minimum-gas-prices=0{DENOM}",
            # warn: info logs several lines a block, every second; json: plain has colours.
            "--log_level=warn",
            "--log_format=json",
            "--x-crisis-skip-assert-invariants",
        ]

    # --- probes -----------------------------------------------------------------
    def rpc_url(self) -> str:
        return f"http://{self.s.host}:{self.ports()['rpc']}"

    def grpc_url(self) -> str:
        return f"grpc+http://{self.s.host}:{self.ports()['grpc']}"

    def rest_url(self) -> str:
        return f"http://{self.s.host}:{self.ports()['api']}"

    def status(self) -> dict[str, Any]:
        reply = httpx.get(self.rpc_url() + "/status", timeout=3)
        reply.raise_for_status()
        return dict(reply.json()["result"])

    def ready(self) -> bool:
        return bool(self.status()["node_info"]["network"] == CHAIN_ID)

    def height(self) -> int:
        sync = self.status()["sync_info"]
        return -1 if sync["catching_up"] else int(sync["latest_block_height"])

    def healthy(self) -> bool:
        """RPC answers and blocks advance: a new block within BLOCK_WAIT_S (1 s blocks)."""
        first = self.height()
        deadline = time.monotonic() + BLOCK_WAIT_S
        while time.monotonic() < deadline:
            time.sleep(0.25)
            if self.height() > first >= 1:
                return True
        return False


class SimdA(_SimdNode):
    """Validator A, the platform's (~90 % of the power); its node serves the platform."""

    name = "simd"
    moniker = "custody-validator-a"

    def ports(self) -> dict[str, int]:
        return {
            "rpc": self.s.cosmos_rpc_port,
            "p2p": self.s.cosmos_p2p_port,
            "grpc": self.s.cosmos_grpc_port,
            "grpc-web": self.s.cosmos_grpc_web_port,
            "api": self.s.cosmos_api_port,
        }

    def bootstrap(self, say: Say) -> dict[str, str]:
        chain = json.loads(self.chain_file.read_text())
        return {
            "CUSTODY_COSMOS_RPC_URL": self.rpc_url(),
            "CUSTODY_COSMOS_GRPC_URL": self.grpc_url(),
            "CUSTODY_COSMOS_REST_URL": self.rest_url(),
            "CUSTODY_COSMOS_CHAIN_ID": CHAIN_ID,
            "CUSTODY_COSMOS_DENOM": DENOM,
            "CUSTODY_COSMOS_DENOM_DECIMALS": str(DENOM_DECIMALS),
            "CUSTODY_COSMOS_ADDRESS_PREFIX": ADDRESS_PREFIX,
            "CUSTODY_COSMOS_FAUCET": str(self.faucet_file),
            "CUSTODY_COSMOS_VALIDATOR": chain["validators"]["simd"]["operator"],
            "CUSTODY_COSMOS_VALIDATOR_B": chain["validators"]["simd-b"]["operator"],
            # The platform's allow-list: both (tests slash clients delegated to B).
            "CUSTODY_COSMOS_VALIDATORS": ",".join(
                chain["validators"][name]["operator"] for name in ("simd", "simd-b")
            ),
        }


class SimdB(_SimdNode):
    """Validator B (~10 % of the power): the one tests stop to see downtime slashing."""

    name = "simd-b"
    moniker = "custody-validator-b"
    # A makes the genesis B starts from, and B alone cannot make blocks.
    needs = ("simd",)

    def ports(self) -> dict[str, int]:
        return {
            "rpc": self.s.cosmos_b_rpc_port,
            "p2p": self.s.cosmos_b_p2p_port,
            "grpc": self.s.cosmos_b_grpc_port,
            "grpc-web": self.s.cosmos_b_grpc_web_port,
            "api": self.s.cosmos_b_api_port,
        }

    def bootstrap(self, say: Say) -> dict[str, str]:
        return {"CUSTODY_COSMOS_B_RPC_URL": self.rpc_url()}


# --- genesis ----------------------------------------------------------------------
def ensure_genesis(settings: StackSettings, say: Say) -> None:
    """Make both validators' homes and their shared genesis once; later starts keep them."""
    a, b = SimdA(settings), SimdB(settings)
    if a.chain_file.exists():
        return
    for node in (a, b):
        if (node.home / "data" / "blockstore.db").exists():
            raise RuntimeError(
                f"{node.home} holds chain data but {a.chain_file} is missing: "
                "not re-creating the genesis over it (remove both homes to start over)"
            )
        shutil.rmtree(node.home, ignore_errors=True)  # a genesis left half made
    say(f"first start: a genesis for {CHAIN_ID} with two validators (power 90/10)")
    simd = str(a.binary)

    def run(*args: str) -> str:
        out = proc.run([simd, *args])
        return out.stdout + out.stderr

    keys: dict[str, dict[str, str]] = {}
    for node in (a, b):
        run("init", node.moniker, "--chain-id", CHAIN_ID, "--home", str(node.home))
        add_key = [simd, "keys", "add", "validator", *KEYRING, "--home", str(node.home)]
        keys[node.name] = json.loads(proc.run([*add_key, "--output", "json"]).stdout)
    faucet = json.loads(
        proc.run(
            [simd, "keys", "add", "faucet", *KEYRING, "--home", str(a.home), "--output", "json"]
        ).stdout
    )
    write_private(
        a.faucet_file,
        json.dumps(
            {
                "address": faucet["address"],
                "mnemonic": faucet["mnemonic"],
                "hd_path": "m/44'/118'/0'/0/0",
                "prefix": ADDRESS_PREFIX,
                "keyring_home": str(a.home),
                "keyring_backend": "test",
                "key_name": "faucet",
            }
        ),
    )
    genesis_a = a.home / "config" / "genesis.json"
    _set_genesis_params(genesis_a)
    for address, amount in (
        (keys["simd"]["address"], VALIDATOR_ACCOUNT_BALANCE),
        (keys["simd-b"]["address"], VALIDATOR_ACCOUNT_BALANCE),
        (faucet["address"], FAUCET_BALANCE),
    ):
        run("add-genesis-account", address, f"{amount}{DENOM}", "--home", str(a.home))
    shutil.copy(genesis_a, b.home / "config" / "genesis.json")
    (a.home / "config" / "gentx").mkdir(exist_ok=True)
    for node, bond in ((a, VALIDATOR_A_BOND), (b, VALIDATOR_B_BOND)):
        run(
            "gentx",
            "validator",
            f"{bond}{DENOM}",
            "--chain-id",
            CHAIN_ID,
            "--moniker",
            node.moniker,
            "--ip",
            settings.host,
            *KEYRING,
            "--home",
            str(node.home),
            "--output-document",
            str(a.home / "config" / "gentx" / f"gentx-{node.name}.json"),
        )
    run("collect-gentxs", "--home", str(a.home))
    run("validate-genesis", "--home", str(a.home))
    shutil.copy(genesis_a, b.home / "config" / "genesis.json")
    for node in (a, b):
        _configure_node(node)
    chain = {
        "chain_id": CHAIN_ID,
        "denom": DENOM,
        "node_ids": {
            node.name: run("tendermint", "show-node-id", "--home", str(node.home)).strip()
            for node in (a, b)
        },
        "validators": {
            node.name: {
                "moniker": node.moniker,
                "account": keys[node.name]["address"],
                "operator": run(
                    "keys",
                    "show",
                    "validator",
                    "--bech",
                    "val",
                    "-a",
                    *KEYRING,
                    "--home",
                    str(node.home),
                ).strip(),
                "self_bond": bond,
            }
            for node, bond in ((a, VALIDATOR_A_BOND), (b, VALIDATOR_B_BOND))
        },
        "faucet": faucet["address"],
    }
    a.chain_file.write_text(json.dumps(chain, indent=2) + "\n")


def _set_genesis_params(path: Path) -> None:
    genesis = json.loads(path.read_text())
    state = genesis["app_state"]
    staking = state["staking"]["params"]
    staking["bond_denom"] = DENOM
    staking["unbonding_time"] = UNBONDING_TIME
    slashing = state["slashing"]["params"]
    slashing["signed_blocks_window"] = str(SIGNED_BLOCKS_WINDOW)
    slashing["min_signed_per_window"] = MIN_SIGNED_PER_WINDOW
    slashing["slash_fraction_downtime"] = SLASH_FRACTION_DOWNTIME
    slashing["downtime_jail_duration"] = DOWNTIME_JAIL_DURATION
    state["mint"]["params"]["mint_denom"] = DENOM
    state["crisis"]["constant_fee"]["denom"] = DENOM
    for coin in state["gov"]["deposit_params"]["min_deposit"]:
        coin["denom"] = DENOM
    state["bank"]["denom_metadata"] = [
        {
            "description": "The custody test chain's staking token",
            "denom_units": [
                {"denom": DENOM, "exponent": 0, "aliases": ["microatom"]},
                {"denom": DISPLAY_DENOM, "exponent": DENOM_DECIMALS, "aliases": []},
            ],
            "base": DENOM,
            "display": DISPLAY_DENOM,
            "name": "Atom (custody test chain)",
            "symbol": "ATOM",
            "uri": "",
            "uri_hash": "",
        }
    ]
    path.write_text(json.dumps(genesis, indent=2) + "\n")


def _configure_node(node: _SimdNode) -> None:
    # Ports and peers go on the command line at every start (settings may change them);
    # what has no flag is set here once.
    _set_toml(
        node.home / "config" / "config.toml",
        {
            "timeout_commit": f'"{TIMEOUT_COMMIT}"',
            "pprof_laddr": '""',  # default localhost:6060, for both nodes: off
            "addr_book_strict": "false",  # peers on 127.0.0.1
            "allow_duplicate_ip": "true",
            # collect-gentxs put A's gentx memo (port 26656) here; peers go as a flag.
            "persistent_peers": '""',
        },
    )
