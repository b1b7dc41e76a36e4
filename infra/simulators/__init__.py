"""Reference counterparts the platform talks to over HTTP: a core-banking system and a
liquidity provider. Real processes with their own databases, started by infra/, with
switches to inject latency, errors, timeouts and lost responses for tests."""
