"""The platform's Kafka topics: names, partitions and configs are part of the contract
with banks, so they live in the core and are created by the platform's own admin code."""

from __future__ import annotations

from sagas.ports import TopicSpec

# Replication (factor, min.insync.replicas) is the deployment's: the bus adapter's
# replication_factor (CUSTODY_KAFKA_REPLICATION_FACTOR) and the brokers' defaults.
_FOREVER = {"retention.ms": "-1"}

COMMANDS = TopicSpec("custody.commands.v1", partitions=6, config={"retention.ms": "604800000"})
EVENTS = TopicSpec("custody.events.v1", partitions=6, config=_FOREVER)
BALANCES = TopicSpec(
    "custody.balances.v1",
    partitions=6,
    config={"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": "3600000"},
)
ALERTS = TopicSpec("custody.alerts.v1", partitions=1, config=_FOREVER)
# One partition: the audit chain is a single totally ordered sequence.
AUDIT = TopicSpec("custody.audit.v1", partitions=1, config=_FOREVER)

ALL = (COMMANDS, EVENTS, BALANCES, ALERTS, AUDIT)
