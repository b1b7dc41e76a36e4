"""Governance on SQL: proposals, approvals and the applied chain (adapters/governance/store.py)."""
