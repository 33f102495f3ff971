"""Incidents: something went wrong with a served model. An incident is opened on a model (or one of its
versions), linked to what it touched — requests from the gateway's audit log, registry versions, actions
taken in words — and closed with a resolution. Every step is a ledger entry, so the story of an
incident can be told from the same chain as the releases it led to.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from bastion.core.errors import InputError
from bastion.storage.database import Database
from bastion.storage.ledger import append, current_actor
from bastion.storage.tables import AuditRecordRow, IncidentLinkRow, IncidentRow

LinkKind = Literal["request", "version", "action"]
LINK_KINDS: tuple[str, ...] = ("request", "version", "action")


class IncidentLink(BaseModel):
    kind: str
    target: str
    linked_at: datetime
    linked_by: str


class Incident(BaseModel):
    id: int
    model: str
    version: int | None
    summary: str
    status: str
    opened_at: datetime
    opened_by: str
    resolution: str | None
    closed_at: datetime | None
    closed_by: str | None
    links: list[IncidentLink]


def open_incident(database: Database, ref: str, *, summary: str, actor: str | None = None) -> Incident:
    """Open an incident on ``ref`` (``NAME`` or ``NAME:VERSION``; the model must be in the registry)."""
    from bastion.governance.registry import ModelRegistry

    actor = current_actor(actor)
    if not summary.strip():
        raise InputError("say what happened: --summary 'what went wrong, seen where'")
    name, _, selector = ref.partition(":")
    name = name.strip()
    number = ModelRegistry(database).version(ref).number if selector.strip() else None
    if not selector.strip():
        ModelRegistry(database).versions(name)  # the model exists
    with database.transaction() as session:
        row = IncidentRow(model=name, version_number=number, summary=summary.strip(), status="open",
                          opened_at=datetime.now(timezone.utc), opened_by=actor)
        session.add(row)
        session.flush()
        append(session, action="incident.open", subject=f"incident:{row.id}", actor=actor,
               payload={"model": name, "version": number, "summary": row.summary})
        return _incident(row)


def link_incident(database: Database, incident_id: int, kind: LinkKind, target: str, *,
                  actor: str | None = None) -> Incident:
    """Link a request id (it must be in the audit log), a version (``NAME:NUMBER``) or an action (words)."""
    return link_incidents(database, incident_id, [(kind, target)], actor=actor)


def link_incidents(database: Database, incident_id: int, links: list[tuple[LinkKind, str]], *,
                   actor: str | None = None) -> Incident:
    """Link several ``(kind, target)`` pairs at once: all of them, or none when one is refused."""
    actor = current_actor(actor)
    with database.transaction() as session:
        row = _open_row(session, incident_id)
        for kind, target in links:
            target = _checked_target(session, database, kind, target)
            row.links.append(IncidentLinkRow(kind=kind, target=target, linked_at=datetime.now(timezone.utc),
                                             linked_by=actor))
            session.flush()
            append(session, action="incident.link", subject=f"incident:{row.id}", actor=actor,
                   payload={"kind": kind, "target": target})
        return _incident(row)


def _checked_target(session: Session, database: Database, kind: str, target: str) -> str:
    """``target`` as it is stored: a request id in the audit log, a version ``NAME:NUMBER``, an action's words."""
    if kind not in LINK_KINDS:
        raise InputError(f"unknown link kind {kind!r}; use one of {', '.join(LINK_KINDS)}")
    target = target.strip()
    if not target:
        raise InputError(f"name the {kind} to link")
    if kind == "request" and session.scalar(select(AuditRecordRow.seq)
                                            .where(AuditRecordRow.request_id == target)) is None:
        raise InputError(f"no request {target!r} in the audit log; request ids start with 'req_' and come back "
                         "in the X-Request-Id header")
    if kind == "version":
        from bastion.governance.registry import ModelRegistry

        return ModelRegistry(database).version(target).ref
    return target


def close_incident(database: Database, incident_id: int, *, resolution: str, actor: str | None = None) -> Incident:
    """Close an open incident with its resolution."""
    actor = current_actor(actor)
    if not resolution.strip():
        raise InputError("say how it was resolved: --resolution 'what was done, and why it is over'")
    with database.transaction() as session:
        row = _open_row(session, incident_id)
        row.status, row.resolution = "closed", resolution.strip()
        row.closed_at, row.closed_by = datetime.now(timezone.utc), actor
        append(session, action="incident.close", subject=f"incident:{row.id}", actor=actor,
               payload={"resolution": row.resolution})
        return _incident(row)


def list_incidents(database: Database, *, model: str | None = None, status: str | None = None) -> list[Incident]:
    """Incidents, newest first, optionally of one model and one status (``open``, ``closed``)."""
    if status is not None and status not in ("open", "closed"):
        raise InputError(f"--status {status!r}: use open or closed")
    with database.sessions() as session:
        query = select(IncidentRow).order_by(IncidentRow.id.desc())
        if model is not None:
            query = query.where(IncidentRow.model == model.strip())
        if status is not None:
            query = query.where(IncidentRow.status == status)
        return [_incident(row) for row in session.scalars(query)]


def get_incident(database: Database, incident_id: int) -> Incident:
    with database.sessions() as session:
        return _incident(_row(session, incident_id))


def _row(session: Session, incident_id: int) -> IncidentRow:
    row = session.get(IncidentRow, incident_id)
    if row is None:
        raise InputError(f"no incident {incident_id}; `bastion incident list` shows them")
    return row


def _open_row(session: Session, incident_id: int) -> IncidentRow:
    row = _row(session, incident_id)
    if row.status != "open":
        raise InputError(f"incident {incident_id} was closed by {row.closed_by}; open a new one")
    return row


def _incident(row: IncidentRow) -> Incident:
    return Incident(id=row.id, model=row.model, version=row.version_number, summary=row.summary, status=row.status,
                    opened_at=row.opened_at, opened_by=row.opened_by, resolution=row.resolution,
                    closed_at=row.closed_at, closed_by=row.closed_by,
                    links=[IncidentLink(kind=link.kind, target=link.target, linked_at=link.linked_at,
                                        linked_by=link.linked_by) for link in row.links])
