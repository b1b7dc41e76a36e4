"""The signer as the worker reaches it: through Temporal, on the signer's own task queue.

Payout code (the EVM broadcaster, the Bitcoin sender) signs from inside a database
transaction in an activity thread; these clients run the signing workflow on the
worker's event loop and wait for its answer. A refusal by the signer comes back as
KeyAccessDenied."""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.client import Client, WorkflowFailureError

from sagas.errors import DependencyUnavailable, KeyAccessDenied, SigningDeadlinePassed
from sagas.signing import TASK_QUEUE as SIGNER_QUEUE
from sagas.signing import (
    SignBtcRequest,
    SignCosmosRequest,
    SignedTransaction,
    SignEvmRequest,
    UnsignedBtcTransaction,
)

T = TypeVar("T")


class TemporalSigningClient:
    def __init__(
        self,
        client: Client,
        loop: asyncio.AbstractEventLoop,
        task_queue: str,
        timeout: float = 15,
        after_sign: Callable[[str], None] = lambda _step: None,
        signer_queue: str = SIGNER_QUEUE,
    ) -> None:
        self._signer_queue = signer_queue
        self._after_sign = after_sign  # fault-injection point for crash tests
        self._client = client
        self._loop = loop
        self._queue = task_queue  # where SignEvmTransaction / SignBtcTransaction run
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"TemporalSigningClient(queue={self._queue!r})"

    def _wait(self, coro: Coroutine[Any, Any, T]) -> T:
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(self._timeout)
        except WorkflowFailureError as exc:
            cause: BaseException | None = exc.cause
            while getattr(cause, "cause", None) is not None:
                cause = cause.cause  # type: ignore[union-attr]
            if getattr(cause, "type", None) == "KeyAccessDenied":
                raise KeyAccessDenied(f"signer refused: {cause}") from exc
            if getattr(cause, "type", None) == "SigningDeadlinePassed":
                raise SigningDeadlinePassed(f"signer: {cause}") from exc
            raise DependencyUnavailable(f"signing failed: {cause}") from exc
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise DependencyUnavailable("the signer did not answer in time") from exc

    def _run(self, workflow: str, request: Any, result_type: type[T], operation: str) -> T:
        result: T = self._wait(
            self._client.execute_workflow(
                workflow,
                request,
                id=f"sign:{operation}:{uuid.uuid4().hex[:12]}",
                task_queue=self._queue,
                result_type=result_type,
                execution_timeout=timedelta(seconds=self._timeout),
            )
        )
        return result

    def sign_evm_transaction(
        self, operation: str, wallet_id: str, index: int, tx: dict[str, object]
    ) -> bytes:
        request = SignEvmRequest(
            operation_id=operation,
            signer_queue=self._signer_queue,
            wallet_id=wallet_id,
            index=index,
            tx={k: v for k, v in tx.items()},  # type: ignore[misc]
        )
        signed = self._run("SignEvmTransaction", request, SignedTransaction, operation)
        self._after_sign("sign")
        return bytes.fromhex(signed.raw_hex)

    def sign_cosmos_transaction(self, request: SignCosmosRequest) -> bytes:
        request = request.model_copy(update={"signer_queue": self._signer_queue})
        op = request.operation_id
        signed = self._run("SignCosmosTransaction", request, SignedTransaction, op)
        self._after_sign("sign")
        return bytes.fromhex(signed.raw_hex)

    def sign_btc_transaction(
        self, operation: str, wallet_id: str, tx: UnsignedBtcTransaction
    ) -> bytes:
        request = SignBtcRequest(
            operation_id=operation, signer_queue=self._signer_queue, wallet_id=wallet_id, tx=tx
        )
        signed = self._run("SignBtcTransaction", request, SignedTransaction, operation)
        self._after_sign("sign")
        return bytes.fromhex(signed.raw_hex)
