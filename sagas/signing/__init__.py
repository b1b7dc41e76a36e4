"""Signing as a Temporal activity served only by the signer process.

The signer process (services/signer) is the one worker polling TASK_QUEUE, and the
only process whose OpenBao role may unwrap seeds. Sagas reach it by running the
activities below on that queue; nothing else ever holds key material.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

TASK_QUEUE = "custody-signer"


class SignEvmRequest(BaseModel):
    operation_id: str = Field(min_length=1)
    signer_queue: str = Field(default=TASK_QUEUE, description="the signer's task queue")
    wallet_id: str
    index: int = Field(ge=0)
    tx: dict[str, int | str] = Field(description="an unsigned EIP-1559 transaction")


class SignedTransaction(BaseModel):
    raw_hex: str


class DigestToSign(BaseModel):
    change: int = Field(ge=0, le=1)
    index: int = Field(ge=0)
    digest_hex: str = Field(pattern=r"^[0-9a-f]{64}$")


class SignBtcRequest(BaseModel):
    operation_id: str = Field(min_length=1)
    signer_queue: str = Field(default=TASK_QUEUE, description="the signer's task queue")
    wallet_id: str
    digests: list[DigestToSign]


class Signature(BaseModel):
    der_hex: str
    pubkey_hex: str


class SignBtcResult(BaseModel):
    signatures: list[Signature]
