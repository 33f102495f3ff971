"""Review results for clients, and the review queue for reviewers (the console's pages use the same service)."""

from __future__ import annotations

import torch
from fastapi import APIRouter

from bastion.core.errors import InputError
from bastion.gateway.deps import Caller, Reviewer, State
from bastion.gateway.errors import ErrorResponses, invalid_input, not_found
from bastion.gateway.inference import output_policy
from bastion.gateway.keys import key_info
from bastion.gateway.outputs import render_outputs
from bastion.gateway.review import decide, get_case, list_cases
from bastion.gateway.schemas import InferOutput, ReviewDecision, ReviewStatus
from bastion.gateway.state import GatewayState
from bastion.storage.tables import ApiKeyRow, AuditRecordRow, ReviewCaseRow

router = APIRouter(tags=["review"])


def review_status(state: GatewayState, case: ReviewCaseRow, record: AuditRecordRow) -> ReviewStatus:
    """What the client may see of a case: the status and, once answered, the outputs under its output policy."""
    outputs = None
    if case.status == "answered":
        probabilities = torch.tensor(record.probabilities, dtype=torch.float32)
        rules = state.served.pipeline.policy.output
        if case.labels is not None:
            outputs = [{"name": "label", "datatype": "INT64", "shape": [len(case.labels)], "data": case.labels}]
        else:
            outputs = render_outputs(probabilities, _client_policy(state, case), rules)
    return ReviewStatus(review_id=case.id, request_id=case.request_id, status=case.status, model_name=case.model,
                        reasons=case.reasons, created_at=case.created_at, decided_by=case.decided_by,
                        decided_at=case.decided_at, note=case.note,
                        outputs=None if outputs is None else [InferOutput(**o) for o in outputs])


def _client_policy(state: GatewayState, case: ReviewCaseRow) -> str:
    with state.database.sessions() as session:
        row = session.get(ApiKeyRow, case.key_id) if case.key_id else None
    return state.served.pipeline.policy.output.default if row is None else output_policy(state, key_info(row))


@router.get("/v2/reviews/{review_id}", response_model=ReviewStatus, responses=ErrorResponses)
def review_result(review_id: str, state: State, key: Caller) -> ReviewStatus:
    """The decision on an escalated request: for the key that sent it, and for reviewers and admins."""
    with state.database.sessions() as session:
        found = get_case(session, review_id)
    if found is None:
        raise not_found(f"no review {review_id!r}")
    case, record = found
    if key.role == "client" and case.key_id != key.id:
        raise not_found(f"no review {review_id!r}")  # not 403: a client cannot learn that others' reviews exist
    return review_status(state, case, record)


@router.get("/v2/reviews", response_model=list[ReviewStatus], responses=ErrorResponses)
def review_queue(state: State, key: Reviewer, status: str | None = "pending", limit: int = 100) -> list[ReviewStatus]:
    """Review cases (pending by default), oldest first. Reviewers and admins."""
    if not 1 <= limit <= 1000:
        raise invalid_input("limit must be between 1 and 1000")
    with state.database.sessions() as session:
        try:
            cases = list_cases(session, status=status, limit=limit)
        except InputError as error:
            raise invalid_input(str(error)) from None
        return [review_status(state, case, get_case(session, case.id)[1]) for case in cases]


@router.post("/v2/reviews/{review_id}/decision", response_model=ReviewStatus, responses=ErrorResponses)
def review_decide(review_id: str, body: ReviewDecision, state: State, key: Reviewer) -> ReviewStatus:
    """Decide a pending case: ``approve``, ``refuse`` or ``relabel`` (with one label per instance)."""
    return decide_case(state, review_id, body, reviewer=f"{key.name} ({key.id})")


def decide_case(state: GatewayState, review_id: str, body: ReviewDecision, *, reviewer: str) -> ReviewStatus:
    """Record a decision and return the case as the client now sees it (404 unknown, 422 not allowed)."""
    try:
        with state.database.transaction() as session:
            case = decide(session, review_id, action=body.action, reviewer=reviewer, labels=body.labels,
                          note=body.note, num_classes=state.served.num_classes)
    except InputError as error:
        if "no review case" in str(error):
            raise not_found(str(error)) from None
        raise invalid_input(str(error)) from None
    state.metrics.pending_reviews.dec()
    with state.database.sessions() as session:
        case, record = get_case(session, case.id)
        return review_status(state, case, record)

