"""In-memory fakes of the ports, for unit tests of the core. Each passes its port's
contract suite in tests/contracts/, the same suite the real adapters pass."""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Sequence

from sagas.errors import CiphertextInvalid, KeyAccessDenied
from sagas.events import Envelope
from sagas.ports import Checkpoint, TopicSpec


class FakeEventBus:
    def __init__(self) -> None:
        self.topics: dict[str, list[Envelope]] = {}
        self._offsets: dict[tuple[str, str], int] = defaultdict(int)

    def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        for spec in specs:
            self.topics.setdefault(spec.name, [])

    def publish(self, topic: str, event: Envelope) -> None:
        if topic not in self.topics:
            raise KeyError(f"unknown topic {topic}")
        self.topics[topic].append(event)

    def read(self, topic: str, group: str, max_events: int, timeout: float) -> list[Envelope]:
        start = self._offsets[(topic, group)]
        batch = self.topics.get(topic, [])[start : start + max_events]
        self._offsets[(topic, group)] = start + len(batch)
        return batch


class FakeKeyWrapper:
    """Ciphertexts are random handles into a vault shared by every role's instance."""

    def __init__(self, vault: dict[str, bytes], may_unwrap: bool) -> None:
        self._vault = vault
        self._may_unwrap = may_unwrap

    def wrap(self, plaintext: bytes) -> str:
        handle = f"fake:v1:{secrets.token_urlsafe(24)}"
        self._vault[handle] = bytes(plaintext)
        return handle

    def unwrap(self, ciphertext: str) -> bytes:
        if not self._may_unwrap:
            raise KeyAccessDenied("fake: this role may not unwrap")
        try:
            return self._vault[ciphertext]
        except KeyError:
            raise CiphertextInvalid("fake: unknown ciphertext") from None


class FakeCheckpointStore:
    def __init__(self) -> None:
        self._rows: dict[str, Checkpoint] = {}

    def save(self, checkpoint: Checkpoint) -> None:
        if checkpoint.height < 0:
            raise ValueError("height must be >= 0")
        self._rows[checkpoint.chain] = checkpoint

    def load(self, chain: str) -> Checkpoint | None:
        return self._rows.get(chain)
