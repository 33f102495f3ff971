"""Replay a logged prediction: the same model file, the policy it ran under and its exact input, run again
and compared bit for bit with what the audit log recorded. A text-guard call (``model`` ``guard-prompt`` or
``guard-output``) is repeated with the guard parameters it was logged under and compared the same way."""

from __future__ import annotations

import json

import numpy as np
import torch
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from bastion.core.errors import InputError
from bastion.gateway.guard import GUARD_MODELS, rerun
from bastion.gateway.outputs import render_outputs
from bastion.gateway.pipeline import Evaluation, PolicyPipeline
from bastion.gateway.policy import policy_from_dict
from bastion.gateway.state import serve_model
from bastion.gateway.text_pipeline import TextPipeline, texts_from_array
from bastion.models.loading import LoadedModel
from bastion.storage.tables import AuditInputRow, AuditRecordRow, PolicyRow

#: Fields the guards' verdicts gained after records were first logged: a record without one is compared without it.
LATER_VERDICT_FIELDS = ("threshold",)


class ReplayResult(BaseModel):
    """The comparison of a replayed prediction with its record.

    ``checks`` maps ``probabilities``, ``scores``, ``decision`` and ``outputs`` (for a guard call: ``verdict``,
    ``scores`` and ``decision``) to whether the replay gave exactly the recorded value; ``identical`` is true
    when all hold.
    """

    request_id: str
    model: str
    model_sha256: str | None
    policy_sha256: str
    decision: str
    replayed_decision: str
    checks: dict[str, bool]
    max_abs_difference: float

    @property
    def identical(self) -> bool:
        return all(self.checks.values())


def logged_input(session: Session, record: AuditRecordRow) -> np.ndarray:
    """The exact input array of a logged request."""
    if record.input_sha256 is None:
        raise InputError(f"request {record.request_id} was stopped before the model ran ({record.decision}, "
                         f"HTTP {record.status}): there is no prediction to replay")
    return _stored_input(session, record.input_sha256, record.request_id)


def _stored_input(session: Session, digest: str, request_id: str) -> np.ndarray:
    row = session.get(AuditInputRow, digest)
    if row is None:
        raise InputError(f"the input {digest} of request {request_id} is missing from the audit log's inputs: the "
                         "database was tampered with or partly restored")
    return np.frombuffer(row.data, dtype=np.dtype(row.dtype)).reshape(row.shape).copy()


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array.astype(np.float32, copy=False))


def _evaluate_as_logged(session: Session, record: AuditRecordRow, pipeline: PolicyPipeline | TextPipeline
                        ) -> Evaluation:
    """The request evaluated as it was: alone, or in its batch (every input of the batch, in order)."""
    if isinstance(pipeline, TextPipeline):  # never batched
        return pipeline.evaluate(texts_from_array(logged_input(session, record)))
    x = _tensor(logged_input(session, record))
    batch = record.batch
    if batch is None:
        return pipeline.evaluate(x)
    digests, index = batch["inputs"], batch["index"]
    if digests[index] != record.input_sha256:
        raise InputError(f"request {record.request_id}'s batch does not hold its input at place {index}: the "
                         "record was tampered with (`bastion audit verify` names it)")
    inputs = [_tensor(_stored_input(session, digest, record.request_id)) for digest in digests]
    return pipeline.evaluate_batch(inputs)[index]


def find_record(session: Session, request_id: str) -> AuditRecordRow:
    """The audit record of ``request_id`` (``InputError`` if there is none)."""
    record = session.scalars(select(AuditRecordRow).where(AuditRecordRow.request_id == request_id)).first()
    if record is None:
        raise InputError(f"no audit record for request {request_id!r}; request ids start with 'req_' and come "
                         "back in the X-Request-Id header and the answer's parameters")
    return record


def replay(session: Session, request_id: str, *, loaded: LoadedModel | None = None) -> ReplayResult:
    """Re-run request ``request_id`` with ``loaded`` under the policy it was logged with (a guard call needs
    no model: ``loaded`` may be ``None``).

    Raises:
        InputError: no such request, no input to replay, a policy missing from the log, or a model file
            whose hash is not the one the request was answered with.
    """
    record = find_record(session, request_id)
    if record.model in GUARD_MODELS.values():
        return _replay_guard(session, record)
    if loaded is None:
        raise InputError(f"request {request_id} was answered by model {record.model!r}: give the model it served "
                         "(--model, --weights)")
    if loaded.sha256 != record.model_sha256:
        raise InputError(f"request {request_id} was answered by the model of hash {record.model_sha256}; the model "
                         f"given has {loaded.sha256}. Pass the same --model/--weights the gateway served then")
    policy = policy_from_dict(_policy_document(session, record), source=f"policy {record.policy_sha256}")
    served = serve_model(loaded, policy, name=record.model, version=record.model_version)
    evaluation = _evaluate_as_logged(session, record, served.pipeline)
    replayed = evaluation.probabilities.tolist()
    recorded = record.probabilities or []
    difference = float(np.max(np.abs(np.asarray(replayed) - np.asarray(recorded)))) if recorded else float("inf")
    checks = {"probabilities": replayed == recorded, "scores": evaluation.scores == record.scores,
              "decision": evaluation.decision == record.decision}
    parameters = record.response.get("parameters") or {}
    if "outputs" in record.response and "output_policy" in parameters:
        outputs = render_outputs(evaluation.probabilities, parameters["output_policy"], policy.output)
        checks["outputs"] = outputs == record.response["outputs"]
    return ReplayResult(request_id=request_id, model=record.model, model_sha256=record.model_sha256,
                        policy_sha256=record.policy_sha256, decision=record.decision,
                        replayed_decision=evaluation.decision, checks=checks, max_abs_difference=difference)


def _policy_document(session: Session, record: AuditRecordRow) -> dict:
    row = session.get(PolicyRow, record.policy_sha256)
    if row is None:
        raise InputError(f"the policy {record.policy_sha256} of request {record.request_id} is not in the database")
    return json.loads(row.document)


def _replay_guard(session: Session, record: AuditRecordRow) -> ReplayResult:
    """Repeat a logged text-guard call and compare its verdict, score and decision with the record's."""
    kind = "prompt" if record.model == GUARD_MODELS["prompt"] else "output"
    again = rerun(kind, _policy_document(session, record), logged_input(session, record),
                  model_sha256=record.model_sha256)
    replayed = {key: value for key, value in again.response.items()
                if key in record.response or key not in LATER_VERDICT_FIELDS}
    checks = {"verdict": replayed == record.response, "scores": again.scores == record.scores,
              "decision": again.decision == record.decision}
    difference = abs(again.scores["score"] - record.scores.get("score", float("inf")))
    return ReplayResult(request_id=record.request_id, model=record.model, model_sha256=record.model_sha256,
                        policy_sha256=record.policy_sha256, decision=record.decision,
                        replayed_decision=again.decision, checks=checks, max_abs_difference=difference)
