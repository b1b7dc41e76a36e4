"""What governance says now: the registered operator and client keys, the active policy
of each client and asset, and the quorum a governance change needs.

The signer never takes these from a table another process can write: it reads them
from a view (`Governance`) that has verified every governance record from the
genesis quorum created at install (issue 12, decision 0012). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from sagas.intents import RegisteredKey
from sagas.policy import StoredPolicy


class Governance(Protocol):
    """The verified governance state, as of its latest record."""

    def operators(self) -> Mapping[str, RegisteredKey]:
        """key id -> operator key (owner: the operator's name)."""

    def client_keys(self) -> Mapping[str, RegisteredKey]:
        """key id -> client system key (owner: the client id)."""

    def policy(self, client_id: str, asset: str) -> StoredPolicy | None:
        """The client's active policy for the asset; None: no policy (refused)."""

    def quorum(self) -> int:
        """How many operators (other than the proposer) approve a governance change."""


@dataclass
class StaticGovernance:
    """A fixed governance state (fast tiers and tests)."""

    operator_keys: dict[str, RegisteredKey] = field(default_factory=dict)
    client_key_map: dict[str, RegisteredKey] = field(default_factory=dict)
    policies: dict[tuple[str, str], StoredPolicy] = field(default_factory=dict)
    governance_quorum: int = 2

    def operators(self) -> Mapping[str, RegisteredKey]:
        return self.operator_keys

    def client_keys(self) -> Mapping[str, RegisteredKey]:
        return self.client_key_map

    def policy(self, client_id: str, asset: str) -> StoredPolicy | None:
        return self.policies.get((client_id, asset))

    def quorum(self) -> int:
        return self.governance_quorum
