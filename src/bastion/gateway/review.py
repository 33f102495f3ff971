"""Human review of escalated requests: the queue, a reviewer's decision, and what the client then gets.

A reviewer may ``approve`` (the model's answer is released under the client's output policy),
``refuse`` (no answer), or ``relabel`` (the reviewer's labels, one per instance, are the answer).
Every decision is also an entry in bastion's ledger (``review.decide``), with who made it.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastion.core.errors import InputError
from bastion.storage.ledger import append
from bastion.storage.tables import AuditRecordRow, ReviewCaseRow

ReviewAction = Literal["approve", "refuse", "relabel"]
REVIEW_ACTIONS: tuple[ReviewAction, ...] = ("approve", "refuse", "relabel")
REVIEW_STATUSES = ("pending", "answered", "refused")


def new_case(*, request_id: str, key_id: str | None, model: str, reasons: list[str]) -> ReviewCaseRow:
    """A pending case for an escalated request (written with the request's audit record)."""
    return ReviewCaseRow(id="rev_" + secrets.token_hex(8), request_id=request_id, key_id=key_id, model=model,
                         reasons=reasons, created_at=datetime.now(timezone.utc), status="pending")


def list_cases(session: Session, *, status: str | None = "pending", limit: int = 100) -> list[ReviewCaseRow]:
    """Cases with ``status`` (one of ``REVIEW_STATUSES``, or ``"all"`` or ``None`` for every case), oldest first."""
    if status == "all":
        status = None
    if status is not None and status not in REVIEW_STATUSES:
        raise InputError(f"unknown review status {status!r}; choose one of {', '.join(REVIEW_STATUSES)} or all")
    query = select(ReviewCaseRow).order_by(ReviewCaseRow.created_at).limit(limit)
    if status is not None:
        query = query.where(ReviewCaseRow.status == status)
    return list(session.scalars(query))


def get_case(session: Session, review_id: str) -> tuple[ReviewCaseRow, AuditRecordRow] | None:
    """The case and the audit record of its request, or ``None``."""
    case = session.get(ReviewCaseRow, review_id)
    if case is None:
        return None
    record = session.scalars(select(AuditRecordRow).where(AuditRecordRow.request_id == case.request_id)).one()
    return case, record


def decide(session: Session, review_id: str, *, action: str, reviewer: str, labels: list[int] | None = None,
           note: str | None = None, num_classes: int | None = None) -> ReviewCaseRow:
    """Record a reviewer's decision on a pending case.

    Args:
        action: ``approve``, ``refuse`` or ``relabel``.
        reviewer: who decides (a key's name, or the CLI user).
        labels: for ``relabel``: one class per instance of the request, each in ``0 .. num_classes - 1``.

    Raises:
        InputError: an unknown case or action, a case already decided, missing or wrong labels.
    """
    found = get_case(session, review_id)
    if found is None:
        raise InputError(f"no review case {review_id!r}")
    case, record = found
    if case.status != "pending":
        raise InputError(f"review {review_id} was already decided ({case.status} by {case.decided_by})")
    if action not in REVIEW_ACTIONS:
        raise InputError(f"unknown action {action!r}; choose approve, refuse or relabel")
    instances = len(record.probabilities or [])
    if action == "relabel":
        if not labels:
            raise InputError(f"relabel needs {instances} label(s), one per instance of the request; none was given")
        if len(labels) != instances:
            raise InputError(f"relabel needs {instances} label(s), one per instance of the request; got "
                             f"{len(labels)}: {labels!r}")
        classes = num_classes if num_classes is not None else len((record.probabilities or [[]])[0])
        if any(not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < classes for v in labels):
            raise InputError(f"labels must be classes 0..{classes - 1}; got {labels!r}")
    elif labels:
        raise InputError(f"labels go with relabel, not {action}")
    case.status = "refused" if action == "refuse" else "answered"
    case.labels = labels if action == "relabel" else None
    case.note = note
    case.decided_by = reviewer
    case.decided_at = datetime.now(timezone.utc)
    append(session, action="review.decide", subject=f"request:{case.request_id}", actor=reviewer,
           payload={"review_id": case.id, "action": action, "labels": labels, "note": note})
    return case
