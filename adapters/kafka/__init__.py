"""The Kafka event backbone (confluent-kafka)."""
