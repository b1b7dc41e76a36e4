"""A workflow that has one EVM transaction signed by the signer process (used by sagas as a
child workflow, and by tests to prove the signer is reachable only through its queue)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from sagas.signing import SignBtcRequest, SignCosmosRequest, SignedTransaction, SignEvmRequest
    from sagas.signing.activities import SigningActivities


# A refusal by the signer is final; anything else is tried a few times.
_TIMEOUT = timedelta(seconds=30)
_RETRY = RetryPolicy(
    maximum_attempts=5, non_retryable_error_types=["KeyAccessDenied", "SigningDeadlinePassed"]
)


@workflow.defn(name="SignEvmTransaction")
class SignEvmWorkflow:
    @workflow.run
    async def run(self, request: SignEvmRequest) -> SignedTransaction:
        return await workflow.execute_activity_method(
            SigningActivities.sign_evm,
            request,
            task_queue=request.signer_queue,
            start_to_close_timeout=_TIMEOUT,
            retry_policy=_RETRY,
        )


@workflow.defn(name="SignBtcTransaction")
class SignBtcWorkflow:
    @workflow.run
    async def run(self, request: SignBtcRequest) -> SignedTransaction:
        return await workflow.execute_activity_method(
            SigningActivities.sign_btc,
            request,
            task_queue=request.signer_queue,
            start_to_close_timeout=_TIMEOUT,
            retry_policy=_RETRY,
        )


@workflow.defn(name="SignCosmosTransaction")
class SignCosmosWorkflow:
    @workflow.run
    async def run(self, request: SignCosmosRequest) -> SignedTransaction:
        return await workflow.execute_activity_method(
            SigningActivities.sign_cosmos,
            request,
            task_queue=request.signer_queue,
            start_to_close_timeout=_TIMEOUT,
            retry_policy=_RETRY,
        )
