"""One inference request through the policy: limits, validation, model and detectors, extraction monitor,
decision, output policy, audit record. Routes call :func:`infer`; nothing here knows about HTTP routing.

Every request that passes authentication and the limits is written to the audit log before it is
answered, refused and invalid ones included (``decision`` ``refuse`` or ``invalid``). Requests stopped
earlier (401, 403, 413, 429) appear in the logs and metrics only, so a flood of them cannot fill the
database.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx
import numpy as np

from bastion.core.ids import array_digest
from bastion.gateway.audit import PendingRecord
from bastion.gateway.batching import BatchSlot
from bastion.gateway.errors import GatewayError, invalid_input
from bastion.gateway.keys import KeyInfo
from bastion.gateway.outputs import render_outputs
from bastion.gateway.pipeline import Evaluation
from bastion.gateway.review import new_case
from bastion.gateway.state import GatewayState, ServedModel
from bastion.gateway.text_pipeline import TextPipeline, text_array

logger = logging.getLogger(__name__)
_background: set[asyncio.Task[Any]] = set()


@dataclass(frozen=True)
class TensorIn:
    """The request's tensor as sent: ``shape``, ``datatype`` and flat (or nested) ``data`` (for a tensor model, a list
    is emptied once :func:`infer` has validated and converted it)."""

    shape: Any
    datatype: Any
    data: Any


@dataclass(frozen=True)
class InferenceResult:
    """What the route answers: the HTTP status and JSON body, and the request's id."""

    status: int
    body: dict[str, Any]
    request_id: str


def new_request_id() -> str:
    """``req_`` and 28 hex digits: the time in milliseconds (12 digits), then 64 random bits.

    The time comes first so that ids sort by when they were made: the audit log's unique index on them then
    grows at its end, on one page a commit, instead of rewriting a page at a random place for every record
    (which SQLite's write-ahead log copies whole, 4 KiB a record)."""
    return f"req_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"


def output_policy(state: GatewayState, key: KeyInfo) -> str:
    """The key's own output policy, else the policy file's default."""
    return _output_policy(state.served, key)


def _output_policy(served: ServedModel, key: KeyInfo) -> str:
    return key.output or served.pipeline.policy.output.default


async def infer(state: GatewayState, key: KeyInfo, tensor: TensorIn, *, client_id: str | None = None
                ) -> InferenceResult:
    """Run one request for ``key`` and log it.

    Raises:
        GatewayError: 422 for an invalid tensor or a refused input (logged), 429 for a limit (not logged).
    """
    state.in_flight += 1
    try:
        return await _infer(state, key, tensor, client_id)
    finally:
        state.in_flight -= 1


async def _infer(state: GatewayState, key: KeyInfo, tensor: TensorIn, client_id: str | None) -> InferenceResult:
    served = state.served
    request_id = new_request_id()
    admit(state, key, _instance_count(tensor, served.pipeline.policy.input.max_instances))
    admitted = datetime.now(timezone.utc)  # the record's time: when the limits let the request in
    try:
        inputs, digest, evaluation, batch = await _evaluate(state, served, tensor)
    except GatewayError as error:
        body = {"error": error.code, "detail": error.detail, "request_id": request_id}
        await state.audit.append(_record(served, key, request_id, None, None, body, "invalid", error.status,
                                         time=admitted))
        raise GatewayError(error.status, error.code, error.detail, headers={"X-Request-Id": request_id}) from None
    _count(state, evaluation)
    if state.monitor is not None and not served.takes_text:  # the monitor measures distances between tensors
        _watch(state, served, key, inputs, evaluation)
    result = _answer(served, key, request_id, evaluation, client_id)
    review = None
    if evaluation.decision == "review":
        review = new_case(request_id=request_id, key_id=key.id, model=served.name, reasons=evaluation.reasons)
        result = _pending(served, request_id, review.id, client_id)
    record = _record(served, key, request_id, inputs, evaluation, result.body, evaluation.decision, result.status,
                     digest=digest, time=admitted)
    record.review = review
    record.batch = None if batch is None else batch.to_json()
    await state.audit.append(record)
    if review is not None:
        state.metrics.pending_reviews.inc()
    if result.status >= 400:
        raise GatewayError(result.status, result.body["error"], result.body["detail"],
                           headers={"X-Request-Id": request_id})
    return result


async def _evaluate(state: GatewayState, served: ServedModel, tensor: TensorIn
                    ) -> tuple[np.ndarray, str, Evaluation, BatchSlot | None]:
    """Validate the request's tensor (422 ``GatewayError``) and evaluate it: the input as logged, its hash, the
    evaluation and the batch it shared. A text model's strings are screened on the guard's worker thread."""
    pipeline = served.pipeline
    if isinstance(pipeline, TextPipeline):
        texts = pipeline.texts(tensor.shape, tensor.datatype, tensor.data)
        inputs = text_array(texts)
        return inputs, array_digest(inputs), await state.guards.run(pipeline.evaluate, texts), None
    x = pipeline.tensor(tensor.shape, tensor.datatype, tensor.data)
    if isinstance(tensor.data, list):
        # The parsed values (a Python float per value) are freed now, while still in the CPU's caches, rather than
        # when the request is answered: freed after the batch's pass and the audit write, 8 concurrent requests'
        # floats cost the gateway about a tenth more CPU a request (RESULTS.md, issue 6). Nothing reads them again.
        # (On the fast path this frees them; FastAPI's route still holds its parsed JSON until it answers.)
        tensor.data.clear()
    inputs = x.numpy()
    digest = array_digest(inputs)
    if state.batcher is None:
        return inputs, digest, pipeline.evaluate(x), None
    evaluation, batch = await state.batcher.evaluate(pipeline, x, digest, in_flight=state.in_flight)
    return inputs, digest, evaluation, batch


def _instance_count(tensor: TensorIn, most: int) -> int:
    """The instances the request claims, for the budget (1 when the shape is malformed: validation says why)."""
    shape = tensor.shape
    first = shape[0] if isinstance(shape, list) and shape else None
    return first if isinstance(first, int) and not isinstance(first, bool) and 1 <= first <= most else 1


def admit(state: GatewayState, key: KeyInfo, instances: int) -> None:
    """Count a request of ``instances`` samples against the key's limits; 429 with ``Retry-After`` when one is
    reached, or when the key is throttled after an extraction alert."""
    if key.id in state.throttled_keys:
        state.metrics.throttled.labels("extraction").inc()
        raise GatewayError(429, "throttled", f"key {key.id} is throttled after an extraction alert; an admin can "
                           "lift it with DELETE /admin/keys/{id}/throttle", headers={"Retry-After": "3600"})
    refusal = state.throttle.admit(key, instances)
    if refusal is not None:
        state.metrics.throttled.labels(refusal.scope).inc()
        raise GatewayError(429, "rate_limited", f"{refusal.scope} of {refusal.limit} reached; retry in "
                           f"{refusal.retry_after} s", headers={"Retry-After": str(refusal.retry_after)})


def _answer(served: ServedModel, key: KeyInfo, request_id: str, evaluation: Evaluation,
            client_id: str | None) -> InferenceResult:
    if evaluation.decision == "refuse":
        detail = "the input was refused by the gateway's policy: " + "; ".join(evaluation.reasons)
        return InferenceResult(422, {"error": "refused", "detail": detail, "request_id": request_id}, request_id)
    policy = _output_policy(served, key)
    parameters: dict[str, Any] = {"request_id": request_id, "decision": evaluation.decision, "output_policy": policy}
    if evaluation.decision == "flag":
        parameters["flags"] = evaluation.reasons
    body = {"model_name": served.name, "model_version": served.version, "id": client_id,
            "outputs": render_outputs(evaluation.probabilities, policy, served.pipeline.policy.output),
            "parameters": parameters}
    return InferenceResult(200, body, request_id)


def _pending(served: ServedModel, request_id: str, review_id: str, client_id: str | None) -> InferenceResult:
    body = {"model_name": served.name, "model_version": served.version, "id": client_id,
            "request_id": request_id, "review_id": review_id, "status": "pending",
            "review_url": f"/v2/reviews/{review_id}"}
    return InferenceResult(202, body, request_id)


def _record(served: ServedModel, key: KeyInfo, request_id: str, inputs: np.ndarray | None,
            evaluation: Evaluation | None, body: dict[str, Any], decision: str, status: int, *,
            digest: str | None = None, time: datetime) -> PendingRecord:
    return PendingRecord(time=time,
        request_id=request_id, key_id=key.id, model=served.name, model_version=served.version,
        model_sha256=served.sha256, policy_sha256=served.policy_sha256, inputs=inputs, input_sha256=digest,
        scores={} if evaluation is None else evaluation.scores,
        probabilities=None if evaluation is None else evaluation.probabilities.tolist(),
        response=body, decision=decision, status=status)


def _count(state: GatewayState, evaluation: Evaluation) -> None:
    state.metrics.decisions.labels(evaluation.decision).inc()
    for name, flags in evaluation.flagged.items():
        flagged = sum(flags)
        if flagged:
            state.metrics.flags.labels(name).inc(flagged)


def _watch(state: GatewayState, served: ServedModel, key: KeyInfo, x: np.ndarray, evaluation: Evaluation) -> None:
    predicted = evaluation.probabilities.argmax(dim=1).numpy()
    ood = evaluation.any_flagged if evaluation.flagged else None
    alerts = state.monitor.observe(key.id, x, predicted, ood=ood)
    rules = served.pipeline.policy.extraction
    for alert in alerts:
        state.metrics.alerts.labels(alert.signal).inc()
        logger.warning("extraction alert", extra={"event": "extraction_alert", "key_id": key.id,
                                                  "signal": alert.signal, "queries": alert.queries,
                                                  "value": alert.value, "threshold": alert.threshold,
                                                  "detail": alert.message})
        if rules.throttle:
            state.throttled_keys.add(key.id)
        if rules.webhook:
            _post_webhook(rules.webhook, {"event": "extraction_alert", "model": served.name,
                                          **alert.model_dump(mode="json")})


def _post_webhook(url: str, payload: dict[str, Any]) -> None:
    async def post() -> None:
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                await client.post(url, json=payload)
        except httpx.HTTPError as error:
            logger.warning("webhook failed", extra={"event": "webhook_failed", "url": url, "error": str(error)})

    task = asyncio.get_running_loop().create_task(post())
    _background.add(task)
    task.add_done_callback(_background.discard)


def nested_tensor(instances: list[Any], datatype: str) -> TensorIn:
    """The ``/predict`` route's ``instances`` as a tensor: shape from the nesting, data flattened.

    Raises:
        GatewayError: 422 when the instances are ragged or hold something other than numbers.
    """
    try:
        array = np.asarray(instances, dtype=np.float64)
    except (TypeError, ValueError):
        raise invalid_input("instances must be equally shaped nested lists of numbers, one per input") from None
    return TensorIn(shape=list(array.shape), datatype=datatype, data=array.reshape(-1).tolist())
