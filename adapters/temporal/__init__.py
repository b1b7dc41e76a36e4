"""Temporal client construction, shared by the API and the worker."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter


async def connect(address: str, namespace: str = "default") -> Client:
    """A Temporal client with the pydantic data converter (configured here, once)."""
    return await Client.connect(
        address, namespace=namespace, data_converter=pydantic_data_converter
    )
